"""Shared fixtures: tiny networks that keep the suite fast on 2 CPU cores."""

import pytest
import torch

from napari_cvdm.diffusion.denoiser import UNetConfig
from napari_cvdm.diffusion.network import NetworkConfig, build_network
from napari_cvdm.diffusion.schedule import ScheduleConfig

TINY_UNET = UNetConfig(in_channels=1, out_channels=1, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                       attention_levels=(1,), num_heads=2, embed_channels=8)
TINY_SCHEDULE = ScheduleConfig(base_channels=4, channel_mults=(1, 2), hidden=16)


def tiny_network(schedule: str = "learned", cond_channels: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    return build_network(NetworkConfig(target_channels=1, cond_channels=cond_channels, schedule=schedule,
                                       denoiser=TINY_UNET, schedule_net=TINY_SCHEDULE))


@pytest.fixture
def tiny_net():
    return tiny_network()


def untrained_model_file(directory, task: str, default_steps: int = 2):
    """A tiny, untrained model file of ``task`` without attention (fast to sample on large images; for GUI
    and I/O tests)."""
    import dataclasses

    from napari_cvdm.data.normalize import default_normalization
    from napari_cvdm.models import save_model

    torch.manual_seed(0)
    net = build_network(NetworkConfig(target_channels=1, cond_channels=1 if task == "sr" else 3,
                                      denoiser=dataclasses.replace(TINY_UNET, attention_levels=()),
                                      schedule_net=TINY_SCHEDULE))
    return save_model(directory / f"tiny-{task}.safetensors", net, task, default_normalization(task),
                      {"note": "test"}, {"steps": 0}, default_steps=default_steps)


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """Tiny untrained model files ``{"sr": path, "qpi": path}`` shared by the GUI and reliability tests."""
    d = tmp_path_factory.mktemp("tiny-models")
    return {task: untrained_model_file(d, task) for task in ("sr", "qpi")}


@pytest.fixture
def errors(monkeypatch):
    """Messages the widgets show as napari error notifications (collected instead of shown)."""
    import napari_cvdm._widgets.finetune as finetune
    import napari_cvdm._widgets.reconstruct as reconstruct

    shown = []
    for module in (finetune, reconstruct):
        monkeypatch.setattr(module, "show_error", shown.append)
    return shown
