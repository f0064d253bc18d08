"""Make the figures of docs/physics.md: simulated inputs, targets and baseline results.

Run: python docs/make_physics_figure.py   (writes docs/images/physics_sr.png and physics_qpi.png)
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from napari_cvdm.data.simulate import SR_STRUCTURES, simulate_qpi_pair, simulate_sr_pair
from napari_cvdm.physics.tie import tie_phase
from napari_cvdm.physics.widefield import bicubic_upsample, richardson_lucy_sr

OUT = Path(__file__).parent / "images"


def _gray(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    lo = np.percentile(a, 0.5) if lo is None else lo
    hi = np.percentile(a, 99.8) if hi is None else hi
    return (np.clip((a - lo) / (hi - lo + 1e-12), 0, 1) * 255).astype(np.uint8)


def _grid(rows: list[list[np.ndarray]], col_titles: list[str], row_titles: list[str], path: Path) -> None:
    tile = rows[0][0].shape[0]
    pad, top, left = 4, 18, 90
    w = left + len(col_titles) * (tile + pad)
    h = top + len(rows) * (tile + pad)
    canvas = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(col_titles):
        draw.text((left + j * (tile + pad) + 4, 3), title, fill=0)
    for i, (row, title) in enumerate(zip(rows, row_titles)):
        draw.text((4, top + i * (tile + pad) + tile // 2 - 6), title, fill=0)
        for j, img in enumerate(row):
            canvas.paste(Image.fromarray(img), (left + j * (tile + pad), top + i * (tile + pad)))
    canvas.save(path)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    rows = []
    for s in SR_STRUCTURES:
        pair = simulate_sr_pair(s, (96, 96), 100.0, rng)
        up = np.asarray(Image.fromarray(_gray(pair.input)).resize((192, 192), Image.NEAREST))
        rows.append(
            [
                up,
                _gray(bicubic_upsample(pair.input)),
                _gray(richardson_lucy_sr(pair.input, pair.optics)),
                _gray(pair.target),
            ]
        )
    _grid(
        rows,
        ["widefield input", "bicubic 2x", "Richardson-Lucy", "SIM-like target"],
        list(SR_STRUCTURES),
        OUT / "physics_sr.png",
    )
    rows = []
    for source in ("cells", "textures"):
        pair = simulate_qpi_pair(source, (160, 160), rng)
        o = pair.optics
        tie = tie_phase(pair.input[0], pair.input[1], o.dz_um, o.wavelength_um, o.pixel_um)
        t = pair.target - pair.target.mean()
        lo, hi = float(t.min()), float(t.max())
        rows.append(
            [_gray(pair.input[0], 0.5, 1.5), _gray(pair.input[1], 0.5, 1.5), _gray(tie, lo, hi), _gray(t, lo, hi)]
        )
    _grid(rows, ["I(-1 um)", "I(+1 um)", "TIE phase", "true phase"], ["cells", "textures"], OUT / "physics_qpi.png")


if __name__ == "__main__":
    main()
