"""Per pair against the TIE: the held-out qpi set (the `evaluate` seed; cells and textures × σ 0.005/0.01/0.02 ×
pure, absorbing 0.8–1, strongly absorbing 0.4–1 and fine absorption; N pairs per class and condition), each pair's
PSNR (dB) for the TIE, the flat-background retrieval and the bundled `qpi` or MODEL (8 samples at its default
steps), then per variant the means, the worst pair against the TIE and how many pairs fall more than 1 dB below it.

    NAPARI_CVDM_FP32=1 python docs/experiments/qpi_per_pair.py [N] [MODEL] [SEED]   # 2: 48 pairs, ~5 min

SEED: another held-out draw than the `evaluate` seed (an independent check of a choice made on that one).
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
from napari_cvdm.jobs.evaluate import TEST_SEED, Example, held_out_set
from napari_cvdm.tasks import get_task


def phases(
    model: Any, n_per_class: int, seed: int = TEST_SEED
) -> Iterator[tuple[Example, str, np.ndarray, np.ndarray, np.ndarray]]:
    """Per held-out pair: the example, its variant, and the phases (rad) of the TIE, the flat-background retrieval
    and ``model`` (8 samples at its default steps); pairs the model refuses are skipped, said."""
    tie, flat = load_method("tie"), load_method("flat-background")
    options = SamplingOptions(8, model.default_steps, 0)
    for ex in held_out_set(get_task("qpi"), n_per_class=n_per_class, classes=["cells", "textures"], seed=seed):
        try:
            t, f, q = (m.predict_with(ex.input, o).mean for m, o in ((tie, None), (flat, None), (model, options)))
        except ValueError as err:  # a draw whose planes no longer look divided by the background is refused
            print(f"{ex.name:14s} {ex.tags[0]:26s} refused: {str(err)[:80]}…", flush=True)
            continue
        yield ex, ex.tags[0].split(" ", 1)[1], t, f, q


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


def main(n_per_class: int, model_name: str = "qpi", seed: int = TEST_SEED) -> None:
    rows: dict[str, list[list[float]]] = {}
    for ex, kind, *results in phases(load_model(model_name), n_per_class, seed):
        scores = [qpi_scores(p, ex.target).psnr for p in results]
        rows.setdefault(kind, []).append(scores)
        t, f, q = scores
        print(f"{ex.name:14s} {ex.tags[0]:26s} TIE {t:6.2f}  flat-background {f:6.2f}  qpi {q:6.2f}", flush=True)
    summary(rows, ("TIE", "flat-background", "qpi"))


if __name__ == "__main__":
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    args = sys.argv[1:]
    main(int(args[0]) if args else 2, *args[1:2], *(int(a) for a in args[2:3]))
