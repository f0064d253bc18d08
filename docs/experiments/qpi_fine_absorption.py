"""What two planes cannot tell apart: 36 simulated camera crops (photo-like fine absorption, smooth absorption
0.4–1, pure phase; three noise levels). Per pair the TIE, the flat-background retrieval and the bundled `qpi`
(8 samples at its default steps), each with the residual of the fitted check (noise units), and the `qpi` mean or its
retrieval, whichever explains the planes better; PSNR in dB against the true phase. Then the fine-absorption
ratio (physics/absorption.py) of 60 more crops per kind.

    python docs/experiments/qpi_fine_absorption.py PHOTO_FOLDER [MODEL]   # e.g. ../shared/data/imagenet-sample

The photos are used in turn (the i-th pair takes photo i modulo their number): give photos no model trained on
(the last 20 of the sample, for the bundled model) to score a model trained with fine absorption. MODEL: a model
file (default: the bundled `qpi`).
"""

import glob
import sys
import warnings

import numpy as np
import torch
from PIL import Image

import napari_cvdm.data.simulate_qpi as sq
from napari_cvdm import load_model
from napari_cvdm.data.metrics import qpi_scores
from napari_cvdm.inference.classical import load_method
from napari_cvdm.inference.predict import SamplingOptions
from napari_cvdm.physics.absorption import FINE_ABSORPTION_RATIO, fine_absorption_ratio
from napari_cvdm.physics.fresnel import QPIOptics
from napari_cvdm.physics.tie import tie_phase
from napari_cvdm.tasks.qpi_condition import RETRIEVAL_NOISE, margin_fit_rms, pair_noise

SIDE = 128


def crop(kind: str, cls: str, s: float, photo: str, rng: np.random.Generator, o: QPIOptics):
    """Planes ``(2, SIDE, SIDE)`` and the true phase of one simulated camera crop."""
    big, c = sq.crop_of_larger_field((SIDE, SIDE), o)
    phase = sq.phase_map(cls, big, rng, o, None)
    if kind == "pure":
        amp = np.ones(big)
    elif kind == "smooth":
        amp = sq.absorption_map(phase, rng, o.pixel_um, (0.4, 1.0))
    else:
        img = np.asarray(Image.open(photo).convert("L").resize(big[::-1]), np.float64) / 255
        amp = 1 - rng.uniform(0.2, 0.6) * (img - img.min()) / np.ptp(img)
    x = sq.camera_planes(phase, amp, c, (SIDE, SIDE), o) + rng.normal(0, s, (2, SIDE, SIDE))
    return x.astype(np.float32), phase[c : c + SIDE, c : c + SIDE]


def compare(photos: list[str], o: QPIOptics, model_name: str = "qpi") -> None:
    model, flat = load_model(model_name), load_method("flat-background")
    rng, rows = np.random.default_rng(11), {}
    for i in range(36):
        cls, s = ("cells", "textures")[i % 2], (0.003, 0.01, 0.02)[i % 3]
        kind = (("photo", "smooth", "pure")[(i // 6) % 3] if i < 18 else "photo") if i < 24 else "pure"
        x, truth = crop(kind, cls, s, photos[i % len(photos)], rng, o)
        tie = tie_phase(x[0], x[1], o.dz_um, o.wavelength_um, o.pixel_um)
        f = flat.predict_with(x, None).mean
        m = model.predict_with(x, SamplingOptions(8, model.default_steps, 0)).mean
        res = [margin_fit_rms(x, v, o) * RETRIEVAL_NOISE / s for v in (tie, f, m)]
        pick = m if res[2] <= res[1] else f
        r = [qpi_scores(v, truth).psnr for v in (tie, f, m, pick)]
        rows.setdefault(kind, []).append(r)
        print(
            f"{kind:6s} {cls:8s} {s:<6g} TIE {r[0]:6.2f} ({res[0]:.2f})  flat {r[1]:6.2f} ({res[1]:.2f})  "
            f"qpi {r[2]:6.2f} ({res[2]:.2f})  better-explaining {r[3]:6.2f}",
            flush=True,
        )
    for kind, v in rows.items():
        a = np.array(v)
        worst = (a[:, 1:] - a[:, :1]).min(0)
        print(
            f"{kind}: n={len(a)} mean TIE {a[:, 0].mean():.2f}, flat {a[:, 1].mean():.2f}, qpi {a[:, 2].mean():.2f}, "
            f"better-explaining {a[:, 3].mean():.2f}; worst against the TIE: {np.round(worst, 2).tolist()}"
        )


def ratios(photos: list[str], o: QPIOptics) -> None:
    rng, out = np.random.default_rng(11), {}
    for i in range(60):
        kind = ("photo", "smooth", "pure")[i // 20]
        x, _ = crop(kind, ("cells", "textures")[i % 2], (0.003, 0.01, 0.02)[i % 3], photos[i % len(photos)], rng, o)
        out.setdefault(kind, []).append(fine_absorption_ratio(x, pair_noise(x)))
    for kind, v in out.items():
        v = np.array(v)
        print(
            f"{kind}: ratio min {v.min():.2f}, median {np.median(v):.2f}, max {v.max():.2f}; "
            f"above {FINE_ABSORPTION_RATIO}: {(v > FINE_ABSORPTION_RATIO).sum()} of {len(v)}"
        )


if __name__ == "__main__":
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    folder = sorted(glob.glob(f"{sys.argv[1]}/*.JPEG"))
    compare(folder, QPIOptics(), *sys.argv[2:3])
    if len(sys.argv) < 3:
        ratios(folder, QPIOptics())
