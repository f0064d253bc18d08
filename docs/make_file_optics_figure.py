"""Figure of the bundled ``sr`` given a real file that states its pixel size: the NEUBIAS HeLa cell (132.5 nm pixels
in its file; CC-BY 4.0, NEUBIAS training resources, image courtesy of Monica Gobran, MPI-NAT), tubulin and actin,
run as before at the model's own optics (62.6 nm) and as a model given no optics runs it now, at the file's pixel
size with the cut-off read off the image. No ground truth: each row prints the residual (the mean pushed back
through the optics it ran at, in noise units; about 1 where the result explains the image).

Run from the repository root: ``python docs/make_file_optics_figure.py`` (writes docs/images/real_sr_file_optics.png).
"""

import warnings
from pathlib import Path

import numpy as np
from make_physics_figure import _grid
from make_real_sr_figure import _tile

from napari_cvdm.data.microscope_files import read_image
from napari_cvdm.inference.classical import load_method
from napari_cvdm.inference.models import load_model
from napari_cvdm.inference.predict import SamplingOptions

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "real-examples"
OUT = Path(__file__).parent / "images" / "real_sr_file_optics.png"
CROP = (slice(100, 260), slice(100, 260))


def main() -> None:
    image = read_image(DATA / "neubias_xyc_16bit__cell_dna_mts_actin.tif")
    own, at_file = load_model("sr"), load_method("sr")  # the model itself; a model given no optics
    options = SamplingOptions(n_samples=8, seed=0, device="cpu")
    rows, titles = [], []
    for channel, title in ((1, "HeLa tubulin"), (2, "HeLa actin")):
        plane = image.data[channel][CROP].astype(np.float32)
        means = []
        for label, run in (("model's optics", own), ("file's pixels", at_file)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = run.predict_with(run.given(plane, image.pixel_size_um), options)
            print(f"{title}, {label}: residual {pred.residual_rms:.2f}x; ran at {pred.optics.describe()}")
            means.append(pred.mean)
        up = np.kron(plane, np.ones((2, 2), np.float32))
        rows.append([_tile(up), *(_tile(m) for m in means)])
        titles.append(title)
    _grid(rows, ["input (2x)", "at the model's 62.6 nm", "at the file's 132.5 nm"], titles, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
