"""Design (a) of the optics range: an sr network *told* the optics' cut-off and run on the camera's own grid, against
design (b), the bundled model run on the image resampled to its cut-off (physics similarity).

    python docs/experiments/sr_told_cutoff.py train OUT_DIR [STEPS]
    python docs/experiments/sr_told_cutoff.py corners OUT_DIR [N_PER_CLASS [SIZE]]
    python docs/experiments/sr_told_cutoff.py held-out OUT_DIR [N_PER_CLASS]
    python docs/experiments/sr_told_cutoff.py real OUT_DIR REAL_PAIRS_DIR RDLSIM_DIR

``train`` widens the bundled ``sr`` network's condition from the image to the image plus one constant channel, the
told value ``log2(c / c₀)`` (c: the optics' OTF cut-off in cycles per camera pixel, ``2·NA·p/λ``; c₀: the model's,
0.31), its input weights zero (it starts as the bundled model), and fine-tunes it from the bundled weights on 5000
pairs simulated on the camera's grid — a quarter at the model's optics, the rest at optics drawn over the range
(pixel 40–130 nm, NA 0.8–1.49, emission 450–680 nm, the camera sampling the PSF), never resampled — with the recipe of
the bundled fine-tune across optics (``--steps N --batch-size 8 --patch-size 48 --lr 2e-4 --warmup 50``). It
checkpoints every 50 steps into OUT_DIR and resumes from there.

``corners`` scores the told network (the EMA weights of the latest checkpoint, or ``told.pt`` when the run ended) on
the held-out scenes of ``sr_corners.sh`` (the same seed, classes and sizes: ``napari-cvdm evaluate --classes
microtubules ccps er actin --n-per-class N --size SIZE`` at each optics), run on the camera grid and told the
optics' value; ``held-out`` on the 60-scene set of docs/models.md at the model's optics (told 0). PSNR after the
task's intensity fit, the mean of 8 samples of 8 steps, uncalibrated (no std). ``real`` on the SFSRM pairs
(``sfsrm_pairs.json`` in REAL_PAIRS_DIR: 100 nm given, the cut-off read off each image as ``predict`` reads it) and
the TIRF-SIM pair (``rdlsim_pairs.json`` in RDLSIM_DIR, written by ``rdlsim_sim_reference.py``: its stated optics),
scored as ``napari-cvdm evaluate-real`` scores them (PSNR after the affine fit, band-passed correlation).
fp32: set NAPARI_CVDM_FP32=1.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from sr_told_blur import CLASSES, Batches, fine_tune, mean_of, told_network, widened  # noqa: E402

from napari_cvdm.data.simulate import draw_sr_conditions, simulate_sr_scene  # noqa: E402
from napari_cvdm.diffusion.network import CVDMNetwork  # noqa: E402
from napari_cvdm.inference.models import load_model  # noqa: E402
from napari_cvdm.jobs.evaluate import held_out_set  # noqa: E402
from napari_cvdm.physics.widefield import WidefieldOptics  # noqa: E402
from napari_cvdm.tasks.sr import SRTask  # noqa: E402

TASK = SRTask()
OWN_SHARE = 0.25
CORNER_CLASSES = ["microtubules", "ccps", "er", "actin"]
CORNERS = [(None, None, None)] + [(p, n, w) for p in (0.04, 0.13) for n in (0.8, 1.49) for w in (0.45, 0.68)]
HELD_OUT = ["microtubules", "ccps", "er", "actin", "blobs", "cells", "mitochondria", "nuclear-pores",
            "focal-adhesions", "golgi"]  # fmt: skip


def told_value(optics: WidefieldOptics) -> float:
    """``log2`` of the optics' cut-off in cycles per pixel over the model's (0 at the model's own optics)."""
    return float(math.log2(TASK.similarity_scale(TASK.default_optics(), optics)))


def training_pair(i: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float]]:
    """Pair ``i`` on the camera's grid: the model's optics for :data:`OWN_SHARE` of them, else drawn over the
    range; its told value."""
    rng = np.random.default_rng([seed, i])
    base = TASK.default_optics()
    optics = base if rng.random() < OWN_SHARE else TASK.draw_optics(rng, base)
    side = TASK.train_size
    pair = simulate_sr_scene(CLASSES[i % len(CLASSES)], (side, side), draw_sr_conditions(rng, None), rng, optics)
    return pair.input, pair.target, (told_value(optics),)


def train(out: Path, steps: int) -> None:
    """Fine-tune the widened bundled network; resumes from ``out/checkpoint.safetensors``."""
    batches = Batches(5000, 19, 8, 48, training_pair)
    fine_tune(out, widened(load_model("sr").network, 1), batches, steps, 19, "sr_told_cutoff")


def scored(net: CVDMNetwork, optics: WidefieldOptics, examples: list, told: bool = True) -> float:
    """Mean PSNR of ``net`` on ``examples`` run on their grid (told ``optics``' value, or not told)."""
    value = (told_value(optics),) if told else None
    return float(np.mean([TASK.scores(mean_of(net, ex.input, value), ex.target).psnr for ex in examples]))


def corners(out: Path, per_class: int, size: int) -> None:
    """Print the told network's PSNR at each corner of the range (and the model's own optics)."""
    net, base = told_network(out, 1), TASK.default_optics()
    for pixel, na, wavelength in CORNERS:
        optics = base if pixel is None else base.replace(pixel_um=pixel, na=na, wavelength_um=wavelength)
        examples = held_out_set(TASK, per_class, size, optics=optics, classes=CORNER_CLASSES)
        t0 = time.perf_counter()
        psnr = scored(net, optics, examples)
        label = f"{optics.pixel_um * 1000:.1f} nm, NA {optics.na}, {optics.wavelength_um * 1000:.0f} nm"
        print(f"{label} (×{2 ** told_value(optics):.2f}, {len(examples)} at {size}²): told {psnr:.2f} dB"
              f" [{time.perf_counter() - t0:.0f} s]", flush=True)  # fmt: skip


def held_out(out: Path, per_class: int) -> None:
    """Print the told network's (told 0) and the bundled model's PSNR on the held-out set at the model's optics."""
    base = TASK.default_optics()
    examples = held_out_set(TASK, per_class, classes=HELD_OUT)
    for name, net, told in (("told", told_network(out, 1), True), ("bundled", load_model("sr").network, False)):
        print(f"held-out ({len(examples)}) {name}: {scored(net, base, examples, told):.2f} dB", flush=True)


def real(out: Path, sfsrm: Path, rdlsim: Path) -> None:
    """Print the told network's scores on the real pairs, told the stated optics or the cut-off read off the image."""
    from napari_cvdm.jobs.real_pairs import read_real_pairs, real_scores

    net, here = told_network(out, 1), Path(__file__).parent
    for spec, data in (("sfsrm_pairs.json", sfsrm), ("rdlsim_pairs.json", rdlsim)):
        for pair in read_real_pairs(here / spec, data):
            optics = TASK.default_optics().replace(**pair.optics)
            if set(pair.optics) == {"pixel_um"}:
                optics = TASK.estimated_optics(pair.input, optics)
            r = real_scores(pair.as_reference_sees(mean_of(net, pair.input, (told_value(optics),))), None,
                            pair.reference)  # fmt: skip
            print(f"{pair.name} at NA {optics.na:.2f} (told {told_value(optics):.2f}): {r['psnr']:.2f} dB, band "
                  f"corr. {r['band_corr']:.3f}, FRC {r['frc_px']:.1f} px", flush=True)  # fmt: skip


def main(argv: list[str]) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if len(argv) >= 2 and argv[0] == "train":
        train(Path(argv[1]), int(argv[2]) if len(argv) > 2 else 3000)
    elif len(argv) >= 2 and argv[0] == "corners":
        corners(Path(argv[1]), int(argv[2]) if len(argv) > 2 else 3, int(argv[3]) if len(argv) > 3 else 64)
    elif len(argv) >= 2 and argv[0] == "held-out":
        held_out(Path(argv[1]), int(argv[2]) if len(argv) > 2 else 6)
    elif len(argv) == 4 and argv[0] == "real":
        real(Path(argv[1]), Path(argv[2]), Path(argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
