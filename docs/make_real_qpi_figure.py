"""Figure of the classical phase methods on the real brightfield pairs of ../shared/data/real-examples (no ground
truth): the two planes, TIE, the iterative retrieval and its residual, for the planes as stored and swapped.

Run from the repository root: ``python docs/make_real_qpi_figure.py`` (writes docs/images/real_qpi.png and
prints the residual and warnings of each case).
"""

from pathlib import Path

import numpy as np
import tifffile
from make_physics_figure import _gray, _grid
from PIL import Image

from napari_cvdm.physics.fresnel import QPIOptics
from napari_cvdm.physics.tie import tie_phase
from napari_cvdm.tasks import get_task
from napari_cvdm.tasks.qpi import iterative_phase

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "real-examples"
CASES = (("pair_dz10um_bin4_px0.64um", 0.64, 10.0), ("pair_dz20um_bin6_px0.96um", 0.96, 20.0))


def _tile(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    side = min(a.shape)
    y0, x0 = (a.shape[0] - side) // 2, (a.shape[1] - side) // 2
    square = a[y0 : y0 + side, x0 : x0 + side]
    return np.asarray(Image.fromarray(_gray(square, lo, hi)).resize((192, 192), Image.NEAREST))


def main() -> None:
    qpi = get_task("qpi")
    rows, titles = [], []
    for name, px, dz in CASES:
        stored = tifffile.imread(DATA / f"{name}.tif").astype(np.float64)
        optics = QPIOptics(wavelength_um=0.532, pixel_um=px, dz_um=dz, max_phase=20.0)
        for order, planes in (("as stored", stored), ("swapped", stored[::-1].copy())):
            phase = iterative_phase(planes, optics)
            tie = tie_phase(planes[0], planes[1], dz, 0.532, px, 0.1 * (0.21 / px) ** 2)
            check = qpi.consistency(planes, phase, optics)
            print(f"{name}, {order}: residual {check.rms:.2f}× the noise (σ {check.noise:.4f}); {check.warnings}")
            lo, hi = np.percentile(phase, (0.5, 99.8))
            rows.append([_tile(planes[0]), _tile(planes[1]), _tile(tie, lo, hi), _tile(phase, lo, hi)])
            rows[-1].append(_tile(check.residual[1], -3, 3))
            titles.append(f"±{dz:g} µm\\n{order}".replace("\\n", " "))
    out = Path(__file__).parent / "images" / "real_qpi.png"
    _grid(rows, ["I(-dz)", "I(+dz)", "TIE", "iterative", "residual +dz"], titles, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
