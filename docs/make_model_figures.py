"""Figures of docs/models.md: input, learned schedule λ(x), CVDM mean, std and target for each bundled model.

Run: python docs/make_model_figures.py   (writes docs/images/model_sr.png and model_qpi.png)
"""

from pathlib import Path

import numpy as np
from make_physics_figure import _gray, _grid
from PIL import Image

from napari_cvdm import load_model
from napari_cvdm.data.simulate import simulate_qpi_pair, simulate_sr_pair

OUT = Path(__file__).parent / "images"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(11)
    sr = load_model("sr")
    rows, titles = [], []
    for structure, photons in (("microtubules", 60.0), ("ccps", 200.0), ("er", 30.0)):
        pair = simulate_sr_pair(structure, (96, 96), photons, rng)
        pred = sr.predict(pair.input, n_samples=8, seed=0)
        up = np.asarray(Image.fromarray(_gray(pair.input)).resize((192, 192), Image.NEAREST))
        rows.append([up, _gray(pred.schedule), _gray(pred.mean), _gray(pred.std), _gray(pair.target)])
        titles.append(f"{structure} {photons:.0f} ph")
    _grid(
        rows, ["widefield input", "learned lambda(x)", "CVDM mean", "CVDM std", "target"], titles, OUT / "model_sr.png"
    )
    qpi = load_model("qpi")
    rows, titles = [], []
    for source in ("cells", "textures"):
        pair = simulate_qpi_pair(source, (160, 160), rng)
        pred = qpi.predict(pair.input, n_samples=8, seed=0)
        t = pair.target - pair.target.mean()
        lo, hi = float(t.min()), float(t.max())
        rows.append(
            [
                _gray(pair.input[1], 0.5, 1.5),
                _gray(pred.schedule),
                _gray(pred.mean, lo, hi),
                _gray(pred.std),
                _gray(t, lo, hi),
            ]
        )
        titles.append(source)
    _grid(
        rows, ["I(+1 um)", "learned lambda(x)", "CVDM phase", "CVDM std", "true phase"], titles, OUT / "model_qpi.png"
    )


if __name__ == "__main__":
    main()
