"""Reliability diagram of the sr std from ``napari-cvdm evaluate --json`` files (PIL only: no matplotlib needed).

    python docs/make_reliability_figure.py OUT.png LABEL=eval.json [LABEL=eval.json ...]

Each file's model rows of group ``all`` are drawn: the observed fraction of pixels within the Gaussian interval
of each nominal probability against that probability (a calibrated std lies on the diagonal).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE, MARGIN = 420, 50
COLOURS = ((200, 60, 40), (40, 110, 200), (40, 160, 80), (150, 80, 170))


def _xy(p: float, q: float) -> tuple[float, float]:
    """Plot coordinates of nominal ``p`` and observed ``q`` (both in [0, 1])."""
    return MARGIN + p * SIZE, MARGIN + (1 - q) * SIZE


def curves(files: list[tuple[str, Path]]) -> list[tuple[str, list[float], list[float]]]:
    """``(label, nominal, observed)`` of each file's model rows on all pairs."""
    out = []
    for label, path in files:
        record = json.loads(Path(path).read_text())
        for row in record["rows"]:
            if row["group"] == "all" and row["reliability"]:
                out.append((label, [0.0, *record["reliability_levels"]], [0.0, *row["reliability"]]))
    return out


def draw(lines: list[tuple[str, list[float], list[float]]], path: Path) -> None:
    img = Image.new("RGB", (SIZE + 2 * MARGIN, SIZE + 2 * MARGIN), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([_xy(0, 1), _xy(1, 0)], outline="black")
    d.line([_xy(0, 0), _xy(1, 1)], fill=(150, 150, 150), width=1)
    for t in (0.2, 0.4, 0.6, 0.8, 1.0):
        d.text((_xy(t, 0)[0] - 8, _xy(t, 0)[1] + 6), f"{t:.1f}", fill="black")
        d.text((_xy(0, t)[0] - 30, _xy(0, t)[1] - 6), f"{t:.1f}", fill="black")
    d.text((MARGIN + SIZE / 2 - 60, MARGIN + SIZE + 24), "nominal probability", fill="black")
    d.text((6, MARGIN - 30), "observed fraction within the interval", fill="black")
    for k, (label, nominal, observed) in enumerate(lines):
        colour = COLOURS[k % len(COLOURS)]
        d.line([_xy(p, q) for p, q in zip(nominal, observed)], fill=colour, width=3)
        d.text((MARGIN + 10, MARGIN + 10 + 16 * k), label, fill=colour)
    img.save(path)


def main() -> None:
    out, *pairs = sys.argv[1:]
    draw(curves([(p.split("=", 1)[0], Path(p.split("=", 1)[1])) for p in pairs]), Path(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
