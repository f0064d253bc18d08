"""Figure of the bundled ``sr`` on the real fluorescence images of ../shared/data/real-examples (no ground truth):
input (upsampled 2×), CVDM mean and calibrated std, for the sparse microtubules and two channels of the HeLa cell.

Run from the repository root: ``python docs/make_real_sr_figure.py`` (writes docs/images/real_sr.png and prints
each image's time, residual and warnings). The images' pixels (132.5 nm for the cell, unknown for the sparse
microtubules) are not the model's 62.6 nm: the warnings say so, as they should.
"""

import time
import warnings
from pathlib import Path

import numpy as np
import tifffile
from make_physics_figure import _gray, _grid
from PIL import Image

from napari_cvdm.inference.models import load_model
from napari_cvdm.inference.predict import SamplingOptions

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "real-examples"
OUT = Path(__file__).parent / "images" / "real_sr.png"
#: (file, channel or None, crop of the input (y0, y1, x0, x1) or None, row title)
CASES = (
    ("neubias_xy_16bit__microtubules", None, None, "microtubules"),
    ("neubias_xyc_16bit__cell_dna_mts_actin", 1, (100, 260, 100, 260), "HeLa tubulin"),
    ("neubias_xyc_16bit__cell_dna_mts_actin", 2, (100, 260, 100, 260), "HeLa actin"),
)


def _tile(a: np.ndarray, hi_percentile: float = 99.8, lo: float | None = None) -> np.ndarray:
    hi = float(np.percentile(a, hi_percentile))
    return np.asarray(Image.fromarray(_gray(a, lo, hi)).resize((256, 256), Image.BILINEAR))


def main() -> None:
    model = load_model("sr")
    options = SamplingOptions(n_samples=8, seed=0, device="cpu")
    rows, titles = [], []
    for name, channel, crop, title in CASES:
        image = tifffile.imread(DATA / f"{name}.tif").astype(np.float32)
        image = image if channel is None else image[channel]
        if crop is not None:
            y0, y1, x0, x1 = crop
            image = image[y0:y1, x0:x1]
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            pred = model.predict_with(image, options)
        print(f"{title}: {image.shape} in {time.perf_counter() - start:.1f} s, residual {pred.residual_rms:.2f}×")
        for w in said:
            print(f"  warning: {w.message}")
        up = np.kron(image, np.ones((2, 2), np.float32))
        rows.append([_tile(up), _tile(pred.mean), _tile(pred.std, 99.8, 0.0)])
        titles.append(title)
    _grid(rows, ["input (2x)", "CVDM mean", "CVDM std (calibrated)"], titles, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
