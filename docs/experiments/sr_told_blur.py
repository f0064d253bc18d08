"""Design (a) for a real microscope's transfer: an sr network *told* the blur (defocus and spherical aberration) as
condition channels, against the same fine-tune that has to guess it.

    python docs/experiments/sr_told_blur.py train OUT_DIR [STEPS]
    python docs/experiments/sr_told_blur.py evaluate OUT_DIR OTF.tif N_PER_CLASS REAL_DIR [REAL_DIR ...]

``train`` widens the bundled ``sr`` network's condition from the image to the image plus two constant channels
(defocus in depths of field ``n·λ/NA²``, spherical aberration in units of 0.15 waves; the pair (z, s) is the same
transfer as (−z, −s), so the sign is put on the spherical term), the new input weights zero (it starts as the bundled
model), and fine-tunes it with the recipe of the guessed fine-tune in the record (``napari-cvdm train --task sr
--simulate 5000 --across-optics --variant aberrated --variant-share 0.5 --from sr --steps 2500 --batch-size 8
--patch-size 48 --lr 2e-4 --warmup 50``): half the pairs aberrated, optics across the range resampled to the model's
cut-off, and the drawn aberration given. It checkpoints every 50 steps into OUT_DIR and resumes from there.

``evaluate`` scores the EMA network, the bundled ``sr`` and (when OUT_DIR holds ``guessed.safetensors``) the guessed
fine-tune, every one run directly on the camera grid: on held-out scenes at the model's optics (in focus, told 0;
aberrated, told the drawn aberration; seed 90210001, never used in training), on the scenes of
``sr_measured_otf.py`` (OTF.tif: the OTF shipped with the real TIRF-SIM frames; told its fit, 0.6 depths of field and
−0.05 waves) and on the real TIRF-SIM pair (each REAL_DIR: the files of ``docs/experiments/rdlsim_pairs.json`` as
``rdlsim_sim_reference.py`` writes them, with either TARGET) told nothing, told the fit, and told its defocus
alone. PSNR after an affine fit (held-out: ``sr_scores``; real: ``real_scores`` after the reference's filter), 8
samples, 8 steps. fp32: set NAPARI_CVDM_FP32=1.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from napari_cvdm.data.dataset import make_batch
from napari_cvdm.data.resample import resample_last_two
from napari_cvdm.data.simulate import draw_aberration, draw_sr_conditions, simulate_sr_scene
from napari_cvdm.diffusion.network import CVDMNetwork, NetworkConfig, build_network
from napari_cvdm.diffusion.sampler import sample
from napari_cvdm.inference.models import load_model
from napari_cvdm.physics.aberrations import depth_of_field_um
from napari_cvdm.tasks.sr import SRTask, sr_affine, sr_condition
from napari_cvdm.training.train import TrainConfig, Trainer

TASK = SRTask()
CLASSES = ("microtubules", "ccps", "er", "actin", "blobs", "cells", "vesicles", "mixtures")
HELD_OUT = ("microtubules", "ccps", "er", "actin", "mitochondria", "nuclear-pores", "focal-adhesions", "golgi")
SPHERICAL_UNIT = 0.15
TOLD = 2
REAL_FIT = (0.6, -0.05)  # the shipped OTF's fit: depths of field, waves


def told_values(z_dof: float, spherical_waves: float) -> tuple[float, float]:
    """The two told numbers of a transfer, its sign put on the spherical term."""
    sign = -1.0 if z_dof < 0 else 1.0
    return abs(z_dof), sign * spherical_waves / SPHERICAL_UNIT


def widened(net: CVDMNetwork, told: int = TOLD) -> CVDMNetwork:
    """``net`` with ``told`` more condition channels whose input weights are zero (the same outputs)."""
    new = build_network(NetworkConfig.from_dict({**net.config.to_dict(), "cond_channels": 1 + told}))
    old = net.state_dict()
    state = new.state_dict()
    f2 = net.config.denoiser.space_to_depth**2
    for key, value in old.items():
        target = state[key]
        if target.shape == value.shape:
            state[key] = value.clone()
        elif key.startswith("denoiser."):  # inputs [z, x, γ] → [z, x, told, γ], each f² channels after unshuffle
            target.zero_()
            target[:, : 2 * f2] = value[:, : 2 * f2]
            target[:, (2 + told) * f2 :] = value[:, 2 * f2 :]
        else:  # the schedule's input: [x] → [x, told]
            target.zero_()
            target[:, : value.shape[1]] = value
    new.load_state_dict(state)
    return new


def with_told(cond: torch.Tensor, told: torch.Tensor) -> torch.Tensor:
    """An image condition ``(B, 1, H, W)`` and told values ``(B, TOLD)`` → condition ``(B, 1 + TOLD, H, W)``."""
    planes = told[:, :, None, None].to(cond.dtype).expand(-1, -1, *cond.shape[-2:])
    return torch.cat([cond, planes], dim=1)


def training_pair(i: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Pair ``i``: optics drawn over the range and resampled to the model's cut-off, half of them aberrated."""
    rng = np.random.default_rng([seed, i])
    base = TASK.default_optics()
    drawn = TASK.draw_optics(rng, base)
    scale = TASK.similarity_scale(base, drawn)
    side = max(int(math.ceil(TASK.train_size / scale)), 16)
    conditions = draw_sr_conditions(rng, None)
    if rng.random() < 0.5:
        conditions = draw_aberration(conditions, rng, drawn)
    pair = simulate_sr_scene(CLASSES[i % len(CLASSES)], (side, side), conditions, rng, drawn)
    grid = (round(side * scale), round(side * scale))
    inp = resample_last_two(pair.input, grid)
    tgt = resample_last_two(pair.target, (2 * grid[0], 2 * grid[1]))
    z_dof = conditions.defocus_um / depth_of_field_um(drawn)
    return inp, tgt, told_values(z_dof, conditions.spherical_waves)


class Batches:
    """Batches of told conditions and residual targets from a cache of pairs (:func:`make_batch`'s patches, flips and
    rotations, the told values appended); ``make_pair(i, seed)`` → ``(input, target, told values)`` draws pair ``i``
    (default: :func:`training_pair`)."""

    def __init__(self, n: int, seed: int, batch: int, patch: int, make_pair: Callable[[int, int], tuple] | None = None):
        self.n, self.seed, self.batch, self.patch = n, seed, batch, patch
        self.make_pair = make_pair or training_pair
        self.cache: dict[int, tuple] = {}
        self.norm = TASK.default_normalization()

    def pair(self, i: int) -> tuple:
        if i not in self.cache:
            self.cache[i] = self.make_pair(i, self.seed)
        return self.cache[i]

    def __call__(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        drawn = [self.pair(int(i)) for i in rng.integers(self.n, size=self.batch)]
        x, y = make_batch([(inp, tgt) for inp, tgt, _ in drawn], TASK, self.norm, self.patch, rng)
        return with_told(x, torch.tensor([told for *_, told in drawn])), y


def fine_tune(out: Path, net: CVDMNetwork, batches: Batches, steps: int, seed: int, experiment: str) -> None:
    """Fine-tune ``net`` on ``batches`` (batch 8, patch 48, lr 2·10⁻⁴, warm-up 50, checkpoints every 50 steps into
    ``out``, resumed from there); the EMA network is written to ``out/told.pt`` when it ends."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(steps=steps, batch_size=8, patch_size=48, lr=2e-4, warmup_steps=50, seed=seed,
                         checkpoint_every=50, validate_every=0)  # fmt: skip
    trainer = Trainer(net, batches, config, checkpoint=out / "checkpoint.safetensors", log=out / "log.jsonl",
                      identity={"experiment": experiment})  # fmt: skip
    if (out / "checkpoint.safetensors").exists():
        trainer.load_checkpoint(out / "checkpoint.safetensors")
        print(f"resumed at step {trainer.step}", flush=True)
    result = trainer.run(lambda p: print(f"step {p.step} {p.seconds:.0f} s", flush=True) if p.step % 50 == 0 else None)
    torch.save(result.network.state_dict(), out / "told.pt")
    (out / "told.json").write_text(json.dumps(result.network.config.to_dict()))
    print(f"done at step {result.steps_done}", flush=True)


def train(out: Path, steps: int) -> None:
    """Fine-tune the widened bundled network; resumes from ``out/checkpoint.safetensors``."""
    fine_tune(out, widened(load_model("sr").network), Batches(5000, 13, 8, 48), steps, 13, "sr_told_blur")


def told_network(out: Path, told: int = TOLD) -> CVDMNetwork:
    """The trained told network (``told.pt``), else the EMA weights of the latest checkpoint."""
    from safetensors.torch import load_file

    net = widened(load_model("sr").network, told)
    if (out / "told.pt").exists():
        net.load_state_dict(torch.load(out / "told.pt"))
    else:
        tensors = load_file(str(out / "checkpoint.safetensors"))
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    return net.eval()


def mean_of(net: CVDMNetwork, image: np.ndarray, told: tuple[float, float] | None, seed: int = 0) -> np.ndarray:
    """The mean of 8 samples (8 steps, fp32) of ``net`` on ``image`` ``(H, W)`` → ``(2H, 2W)`` in its units;
    ``told``: the blur given to a told network (``None``: a network of the image alone)."""
    offset, scale = sr_affine(image, TASK.default_normalization())
    x = torch.from_numpy((image - offset) / scale).float()[None, None]
    cond = sr_condition(x) if told is None else with_told(sr_condition(x), torch.tensor([told]))
    with torch.no_grad():
        s = sample(net, cond, 8, 8, torch.Generator().manual_seed(seed))
    return ((s.mean(0)[0] + cond[0, 0]) * scale + offset).numpy()


def held_out(per_class: int, aberrated: bool) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """Held-out scenes at the model's optics (seed 90210001, never used in training) and their told blur."""
    optics, scenes = TASK.default_optics(), []
    for c, cls in enumerate(HELD_OUT):
        for k in range(per_class):
            rng = np.random.default_rng([90210001, int(aberrated), c, k])
            conditions = draw_sr_conditions(rng, None)
            if aberrated:
                conditions = draw_aberration(conditions, rng, optics)
            pair = simulate_sr_scene(cls, (64, 64), conditions, rng, optics)
            told = told_values(conditions.defocus_um / depth_of_field_um(optics), conditions.spherical_waves)
            scenes.append((pair.input, pair.target, told))
    return scenes


def measured_otf(nets: dict[str, tuple[CVDMNetwork, bool]], otf_path: Path) -> None:
    """The scenes of ``sr_measured_otf.py`` (same seed, 4 per class) through the Airy pattern (told 0) and through
    the measured OTF (told its fit), every network run directly on the camera grid."""
    sys.path.insert(0, str(Path(__file__).parent))
    from sr_measured_otf import CLASSES as OTF_CLASSES
    from sr_measured_otf import scene, score

    rng, rows = np.random.default_rng(20261203), {}
    for cls in OTF_CLASSES:
        for _ in range(4):
            images, target = scene(cls, str(otf_path), rng)
            for transfer, image in images.items():
                given = (0.0, 0.0) if transfer == "ideal Airy" else told_values(*REAL_FIT)
                for name, (net, told) in nets.items():
                    mean = mean_of(net, image.astype(np.float32), given if told else None)
                    rows.setdefault((transfer, name), []).append(score(mean, target))
    for (transfer, name), values in rows.items():
        print(f"{transfer} ({len(values)}) {name}: {np.mean(values):.2f} dB", flush=True)


def evaluate(out: Path, otf: Path, per_class: int, real_dirs: list[Path]) -> None:
    """Print the held-out and real-pair table rows (see the module docstring)."""
    from napari_cvdm.data.metrics import sr_scores
    from napari_cvdm.jobs.real_pairs import read_real_pairs, real_scores

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    nets = {"bundled": (load_model("sr").network, False), "told": (told_network(out), True)}
    if (out / "guessed.safetensors").exists():
        nets["guessed"] = (load_model(str(out / "guessed.safetensors")).network, False)
    for aberrated in (False, True):
        scenes = held_out(per_class, aberrated)
        for name, (net, told) in nets.items():
            scores = [sr_scores(mean_of(net, i, t if told else None), g).psnr for i, g, t in scenes]
            print(f"held-out {'aberrated' if aberrated else 'in focus'} ({len(scenes)}) {name}: "
                  f"{np.mean(scores):.2f} dB", flush=True)  # fmt: skip
    measured_otf(nets, otf)
    for real in real_dirs:
        pair = read_real_pairs(Path(__file__).with_name("rdlsim_pairs.json"), real)[0]
        for name, (net, told) in nets.items():
            for given in ((0.0, 0.0), told_values(*REAL_FIT), told_values(REAL_FIT[0], 0.0)) if told else (None,):
                r = real_scores(pair.as_reference_sees(mean_of(net, pair.input, given)), None, pair.reference)
                print(f"real TIRF-SIM ({real.name}) {name} told {given}: {r['psnr']:.2f} dB, band corr. "
                      f"{r['band_corr']:.3f}", flush=True)  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "train":
        train(Path(argv[1]), int(argv[2]) if len(argv) > 2 else 2500)
    elif len(argv) >= 5 and argv[0] == "evaluate":
        evaluate(Path(argv[1]), Path(argv[2]), int(argv[3]), [Path(a) for a in argv[4:]])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
