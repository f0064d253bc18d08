"""Resolution without a ground truth on real TIRF-SIM raw frames: the 9 frames split into two independent halves
(even and odd frames), each half's mean a widefield image; every method reconstructs both halves and the Fourier
ring correlation of the two results (1/7 threshold, inner part) says down to which period they agree. Beside it,
how well each result explains its widefield input (the consistency residual, in noise units).

    python docs/experiments/sr_rdlsim_halves.py FILE [FIGURE.png]

FILE: ../shared/data/real-pairs/rdlsim_mt_raw9_tirfsim.tif.

With FIGURE, a crop of the whole mean's widefield image, Richardson–Lucy and the CVDM mean and std is saved there.

A generative model can agree with itself on detail it invents from its prior, so the FRC here bounds what the two
halves share, not what is true; read it with the residual.
"""

import sys
import warnings

import numpy as np
import tifffile
from PIL import Image

from napari_cvdm import load_model
from napari_cvdm.inference.classical import classical_method
from napari_cvdm.inference.optics_match import model_at
from napari_cvdm.inference.predict import SamplingOptions
from napari_cvdm.jobs.real_pairs import BORDER, frc_resolution

#: The source's optics: 62.6 nm pixels, NA 1.35, 488 nm excitation (emission taken at 0.52 µm).
STATED = {"pixel_um": 0.0626, "na": 1.35, "wavelength_um": 0.52}


def main(path: str) -> None:
    warnings.simplefilter("ignore")
    frames = tifffile.imread(path).astype(np.float32)
    halves = [frames[0::2].mean(axis=0), frames[1::2].mean(axis=0)]
    model = load_model("sr")
    methods = {
        "bicubic": classical_method("bicubic", STATED),
        "Richardson–Lucy (stated optics)": classical_method("richardson-lucy", STATED),
        "CVDM sr (its own optics)": model,
        "CVDM sr (stated optics)": model_at(model, STATED),
    }
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    print("| method | FRC of the two halves (nm) | residual, half 1 / half 2 (× noise) |")
    print("|---|---|---|")
    for label, method in methods.items():
        # another seed per half: the same initial noise would make the two means agree where the samples do
        results = [method.predict_with(h, SamplingOptions(8, None, seed)) for seed, h in enumerate(halves)]
        px = frc_resolution(results[0].mean[inner], results[1].mean[inner])
        nm = px * STATED["pixel_um"] / 2 * 1000
        res = " / ".join(f"{r.residual_rms:.2f}" for r in results)
        print(f"| {label} | {nm:.0f} | {res} |", flush=True)


def _gray(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, (0.5, 99.8))
    return (np.clip((a - lo) / (hi - lo + 1e-12), 0, 1) * 255).astype(np.uint8)


def figure(path: str, out: str) -> None:
    """Widefield (the mean of all 9 frames, pixels doubled), Richardson–Lucy, CVDM mean and std: 128² input crop."""
    wide = tifffile.imread(path).astype(np.float32).mean(axis=0)
    rl = classical_method("richardson-lucy", STATED).predict_with(wide).mean
    pred = load_model("sr").predict_with(wide, SamplingOptions(8, None, 0))
    y, x = slice(200, 456), slice(200, 456)
    tiles = [np.kron(wide[100:228, 100:228], np.ones((2, 2))), rl[y, x], pred.mean[y, x], pred.std[y, x]]
    canvas = np.full((256, 4 * 256 + 12), 255, np.uint8)
    for k, tile in enumerate(tiles):
        canvas[:, k * 260 : k * 260 + 256] = _gray(tile)
    Image.fromarray(canvas).save(out)


if __name__ == "__main__":
    main(sys.argv[1])
    if len(sys.argv) > 2:
        figure(sys.argv[1], sys.argv[2])
