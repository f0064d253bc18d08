"""The real coherent brightfield pairs of one cell at ±10 µm (0.64 µm pixels) and ±20 µm (0.96 µm pixels), each
reconstructed at its own optics by every qpi method; prints each phase's span and residual, the notes, and how well
the two distances agree (correlation after resampling the ±10 µm phase to the ±20 µm grid, ratio of spans).

    python docs/experiments/qpi_real_pairs.py FOLDER [MODEL]   # FOLDER holds the two pair_dz*.tif files

MODEL: the learned method (default: the bundled `qpi`), a model file.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import tifffile
from skimage.transform import resize

from napari_cvdm.inference.classical import load_method

PAIRS = {10.0: ("pair_dz10um_bin4_px0.64um.tif", 0.64), 20.0: ("pair_dz20um_bin6_px0.96um.tif", 0.96)}
METHODS = ("tie", "iterative", "flat-background", "qpi")


def span(phase: np.ndarray) -> float:
    return float(np.percentile(phase, 99.5) - np.percentile(phase, 0.5))


def main(folder: Path, model_name: str = "qpi") -> None:
    phases, methods = {}, (*METHODS[:-1], model_name)
    for dz, (name, pixel) in PAIRS.items():
        planes = tifffile.imread(folder / name).astype(np.float32)
        for method in methods:
            model = load_method(method, {"dz_um": dz, "pixel_um": pixel, "wavelength_um": 0.532})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = model.predict(planes, n_samples=8)
            phases[dz, method] = result.mean.astype(np.float64)
            print(f"±{dz:g} µm {method:16s} span {span(result.mean):5.2f} rad, residual {result.residual_rms:.2f}×")
            for remark in result.warnings:
                print(f"    {remark}")
    for method in methods:
        near, far = phases[10.0, method], phases[20.0, method]
        near = resize(near, far.shape, order=1, anti_aliasing=True)
        corr = np.corrcoef(near.ravel(), far.ravel())[0, 1]
        print(f"{method:16s} ±10 vs ±20 µm: correlation {corr:.3f}, spans {span(near):.2f} / {span(far):.2f} rad")


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:3])
