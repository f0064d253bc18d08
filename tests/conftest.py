"""Shared fixtures: tiny networks that keep the suite fast on 2 CPU cores."""

import pytest
import torch

from napari_cvdm.diffusion.denoiser import UNetConfig
from napari_cvdm.diffusion.network import NetworkConfig, build_network
from napari_cvdm.diffusion.schedule import ScheduleConfig

TINY_UNET = UNetConfig(
    in_channels=1,
    out_channels=1,
    base_channels=8,
    channel_mults=(1, 2),
    num_res_blocks=1,
    attention_levels=(1,),
    num_heads=2,
    embed_channels=8,
)
TINY_SCHEDULE = ScheduleConfig(base_channels=4, channel_mults=(1, 2), hidden=16)


def tiny_network(schedule: str = "learned", cond_channels: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    return build_network(
        NetworkConfig(
            target_channels=1,
            cond_channels=cond_channels,
            schedule=schedule,
            denoiser=TINY_UNET,
            schedule_net=TINY_SCHEDULE,
        )
    )


@pytest.fixture
def tiny_net():
    return tiny_network()


def tiny_config(task: str, attention: bool = True) -> NetworkConfig:
    """A tiny network config for ``task`` (its condition channels come from the task)."""
    import dataclasses

    from napari_cvdm.tasks import get_task

    t = get_task(task)
    denoiser = TINY_UNET if attention else dataclasses.replace(TINY_UNET, attention_levels=())
    return NetworkConfig(
        cond_channels=t.cond_channels(t.default_normalization()), denoiser=denoiser, schedule_net=TINY_SCHEDULE
    )


def untrained_model_file(directory, task: str, default_steps: int = 2):
    """A tiny, untrained model file of ``task`` without attention (fast to sample on large images; for GUI
    and I/O tests), named as the bundled model of the task it stands in for (its results are ``<input> CVDM …``)."""
    from napari_cvdm.inference.models import save_model
    from napari_cvdm.tasks import get_task

    torch.manual_seed(0)
    t = get_task(task)
    return save_model(
        directory / f"tiny-{task}.safetensors",
        build_network(tiny_config(task, attention=False)),
        t,
        t.default_normalization(),
        t.default_optics(),
        {"steps": 0},
        default_steps=default_steps,
        name=task,
    )


def make_trainer(task="sr", steps=6, tmp_path=None, validator=None, **kw):
    """A trainer of a tiny network on 6 simulated 32² pairs (checkpoints every 3 steps when ``tmp_path``)."""
    from napari_cvdm.data.dataset import SimulatedPairs
    from napari_cvdm.tasks import get_task
    from napari_cvdm.training.train import TrainConfig, Trainer, new_network
    from napari_cvdm.training.training_data import pair_batches

    t = get_task(task)
    pairs = SimulatedPairs(task=t, n=6, size=32, seed=1)
    kw.setdefault("validate_every", 0)
    cfg = TrainConfig(steps=steps, batch_size=2, patch_size=16, checkpoint_every=3, seed=3, **kw)
    ckpt = tmp_path / "run.ckpt.safetensors" if tmp_path else None
    return Trainer(
        new_network(tiny_config(task), 0),
        pair_batches(t, pairs, t.default_normalization(), cfg),
        cfg,
        validator=validator,
        checkpoint=ckpt,
        log=tmp_path / "log.jsonl" if tmp_path else None,
        identity={"task": t.name},
    )


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory):
    """Tiny model files ``{"sr": path, "qpi": path}`` trained for 3 steps (default 4 sampling steps)."""
    from napari_cvdm.inference.models import save_model
    from napari_cvdm.tasks import get_task

    d = tmp_path_factory.mktemp("trained")
    out = {}
    for task in ("sr", "qpi"):
        t = get_task(task)
        result = make_trainer(task, steps=3).run()
        out[task] = save_model(
            d / f"{task}.safetensors",
            result.network,
            t,
            t.default_normalization(),
            t.default_optics(),
            {"steps": 3},
            default_steps=4,
        )
    return out


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """Tiny untrained model files ``{"sr": path, "qpi": path}`` shared by the GUI and reliability tests."""
    d = tmp_path_factory.mktemp("tiny-models")
    return {task: untrained_model_file(d, task) for task in ("sr", "qpi")}


@pytest.fixture
def errors(monkeypatch):
    """Messages the widgets show as napari error notifications (collected instead of shown)."""
    import napari_cvdm._widgets._common as common
    import napari_cvdm._widgets._runner as runner
    import napari_cvdm._widgets.finetune as finetune
    import napari_cvdm._widgets.reconstruct as reconstruct

    shown = []
    for module in (finetune, reconstruct, common, runner):
        monkeypatch.setattr(module, "show_error", shown.append)
    return shown


def run_torchrun(args: list[str], port: int, processes: int = 2):
    """``torchrun --nproc_per_node N -m napari_cvdm ARGS`` on the CPU (gloo, one thread each), finished."""
    import os
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_port",
        str(port),
        "-m",
        "napari_cvdm",
        *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def input_checks(monkeypatch):
    """The shapes of the images the tasks check (:meth:`TaskInputs.check_input`: the check and the one float64
    copy of an input), in order."""
    from napari_cvdm.tasks.inputs import TaskInputs

    seen = []
    check = TaskInputs.check_input

    def counted(self, image):
        seen.append(tuple(getattr(image, "shape", ())))
        return check(self, image)

    monkeypatch.setattr(TaskInputs, "check_input", counted)
    return seen
