"""sr on the real SFSRM widefield/STORM pairs: bicubic, Richardson–Lucy and CVDM at the model's own optics and at
the stated optics (physics similarity), scored against the STORM render brought to the 2× grid.

    python docs/experiments/real_pairs_sr.py [DATA_DIR] [--samples 8] [--steps 8]

The STORM render (4× grid, a localisation density) is binned 2×2 to the 2× grid and blurred (σ 1 px there), as the
data's README says. Scores: PSNR after an affine fit of each result to the reference, and the correlation of the
band-passed detail (difference of Gaussians, σ 1 and 4 output pixels), on the inner part (16-pixel border left out).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy.ndimage import gaussian_filter

from napari_cvdm.classical import classical_method
from napari_cvdm.metrics import affine_fit, psnr
from napari_cvdm.models import load_model
from napari_cvdm.optics_match import at_optics
from napari_cvdm.physics.cutoff import estimate_cutoff
from napari_cvdm.predict import SamplingOptions

PAIRS = {"mitochondria": ("sfsrm_mito_wf_crop_y64x320.tif", "sfsrm_mito_storm4x_crop_y256x1280.tif"),
         "ER": ("sfsrm_er_wf_crop_y0x0.tif", "sfsrm_er_storm4x_crop_y0x0.tif")}  # fmt: skip
BORDER = 16


def reference(storm: np.ndarray) -> np.ndarray:
    """The STORM render on the 2× grid: 2×2 bins, blurred by σ 1 pixel."""
    s = storm.astype(np.float64)
    h, w = s.shape[0] // 2 * 2, s.shape[1] // 2 * 2
    binned = s[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return gaussian_filter(binned, 1.0)


def band(x: np.ndarray) -> np.ndarray:
    return gaussian_filter(x, 1.0) - gaussian_filter(x, 4.0)


def scores(estimate: np.ndarray, ref: np.ndarray, std: np.ndarray | None) -> str:
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    e, r = np.asarray(estimate, np.float64)[inner], ref[inner]
    fit = affine_fit(e, r)
    corr = float(np.corrcoef(band(np.asarray(estimate, np.float64))[inner].ravel(), band(ref)[inner].ravel())[0, 1])
    text = f"PSNR {psnr(fit, r):6.2f} dB  band corr {corr:.3f}"
    if std is not None and np.any(std > 0):
        a = np.polyfit(e.ravel(), r.ravel(), 1)[0]  # the same affine scale applied to the std
        within = float(np.mean(np.abs(fit - r) <= 2 * abs(a) * np.asarray(std, np.float64)[inner]))
        text += f"  ±2σ {within:.1%}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", default="../shared/data/real-pairs")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--pixel-size", type=float, default=0.1, help="the widefield's pixel, µm (README: ≈ 100 nm)")
    args = parser.parse_args(argv)
    model = load_model("sr")
    stated = {"pixel_um": args.pixel_size}  # NA and wavelength are not stated: the model's
    methods = {
        "bicubic": classical_method("bicubic", stated),
        "Richardson–Lucy (stated optics)": classical_method("richardson-lucy", stated),
        "CVDM, model's optics": model,
        f"CVDM at {args.pixel_size * 1000:.0f} nm pixels": at_optics(model, stated),
    }
    for name, (wf_file, storm_file) in PAIRS.items():
        wf = tifffile.imread(Path(args.data) / wf_file).astype(np.float32)
        ref = reference(tifffile.imread(Path(args.data) / storm_file))
        print(f"{name}: widefield {wf.shape}, reference {ref.shape}")
        cutoff = estimate_cutoff(wf)
        na = cutoff * model.optics.wavelength_um / (2 * args.pixel_size)  # the model's wavelength, the NA that fits
        print(f"  estimated cut-off {cutoff:.3f} cycles/pixel (NA/λ {na / model.optics.wavelength_um:.2f} /µm)")
        estimated = {f"CVDM at the estimated cut-off ({cutoff:.3f})": at_optics(model, {**stated, "na": na})}
        for label, method in {**methods, **estimated}.items():
            t0 = time.perf_counter()
            pred = method.predict_with(wf, SamplingOptions(args.samples, args.steps, seed=0))
            std = pred.std if method.stochastic else None
            rms = "" if pred.residual_rms is None else f"  residual {pred.residual_rms:.2f}×"
            print(f"  {label:34s} {scores(pred.mean, ref, std)}{rms}  ({time.perf_counter() - t0:.1f} s)")
            for w in pred.warnings:
                print(f"      warning: {w[:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
