"""Per pair against the TIE: the held-out qpi set (the `evaluate` seed; cells and textures × σ 0.005/0.01/0.02 ×
pure, absorbing 0.8–1, strongly absorbing 0.4–1 and fine absorption; N pairs per class and condition), each pair's
PSNR (dB) for the TIE, the flat-background retrieval and the bundled `qpi` (8 samples × 10 steps), then per variant
the means, the worst pair against the TIE and how many pairs fall more than 1 dB below it.

    NAPARI_CVDM_FP32=1 python docs/experiments/qpi_per_pair.py [N]   # default 2: 48 pairs, about 8 min on 2 cores
"""

import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from napari_cvdm import load_model
from napari_cvdm.data.metrics import qpi_scores
from napari_cvdm.inference.classical import load_method
from napari_cvdm.inference.predict import SamplingOptions
from napari_cvdm.jobs.evaluate import Example, held_out_set
from napari_cvdm.tasks import get_task


def phases(model: Any, n_per_class: int) -> Iterator[tuple[Example, str, np.ndarray, np.ndarray, np.ndarray]]:
    """Per held-out pair: the example, its variant, and the phases (rad) of the TIE, the flat-background retrieval
    and ``model`` (8 samples × 10 steps)."""
    tie, flat = load_method("tie"), load_method("flat-background")
    for ex in held_out_set(get_task("qpi"), n_per_class=n_per_class, classes=["cells", "textures"]):
        t, f = (m.predict_with(ex.input, None).mean for m in (tie, flat))
        yield ex, ex.tags[0].split(" ", 1)[1], t, f, model.predict_with(ex.input, SamplingOptions(8, 10, 0)).mean


def summary(rows: dict[str, list[list[float]]], names: Sequence[str]) -> None:
    """Per variant: the mean PSNR of each method (the TIE first), each other method's worst pair against the TIE
    and how many of its pairs fall more than 1 dB below it."""
    for kind, values in rows.items():
        a = np.array(values)
        d = a[:, 1:] - a[:, :1]
        means = " / ".join(f"{name} {m:.2f}" for name, m in zip(names, a.mean(0), strict=True))
        worst = " / ".join(f"{w:+.2f}" for w in d.min(0))
        below = " / ".join(str(int(b)) for b in (d < -1).sum(0))
        print(f"{kind}: n={len(a)}, means {means}; worst against the TIE {worst}; more than 1 dB below it: {below}")


def main(n_per_class: int) -> None:
    rows: dict[str, list[list[float]]] = {}
    for ex, kind, *results in phases(load_model("qpi"), n_per_class):
        scores = [qpi_scores(p, ex.target).psnr for p in results]
        rows.setdefault(kind, []).append(scores)
        t, f, q = scores
        print(f"{ex.name:14s} {ex.tags[0]:26s} TIE {t:6.2f}  flat-background {f:6.2f}  qpi {q:6.2f}", flush=True)
    summary(rows, ("TIE", "flat-background", "qpi"))


if __name__ == "__main__":
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
