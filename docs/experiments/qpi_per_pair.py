"""Per pair against the TIE: the held-out qpi set (the `evaluate` seed; cells and textures × σ 0.005/0.01/0.02 ×
pure, absorbing 0.8–1, strongly absorbing 0.4–1 and fine absorption; N pairs per class and condition), each pair's
PSNR (dB) for the TIE, the flat-background retrieval and the bundled `qpi` (8 samples × 10 steps), then per variant
the means, the worst pair against the TIE and how many pairs fall more than 1 dB below it.

    NAPARI_CVDM_FP32=1 python docs/experiments/qpi_per_pair.py [N]   # default 2: 48 pairs, about 8 min on 2 cores
"""

import sys
import warnings

import numpy as np
import torch

from napari_cvdm import load_model
from napari_cvdm.data.metrics import qpi_scores
from napari_cvdm.inference.classical import load_method
from napari_cvdm.inference.predict import SamplingOptions
from napari_cvdm.jobs.evaluate import held_out_set
from napari_cvdm.tasks import get_task


def main(n_per_class: int) -> None:
    task, model = get_task("qpi"), load_model("qpi")
    tie, flat = load_method("tie"), load_method("flat-background")
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for ex in held_out_set(task, n_per_class=n_per_class, classes=["cells", "textures"]):
        t, f = (qpi_scores(m.predict_with(ex.input, None).mean, ex.target).psnr for m in (tie, flat))
        q = qpi_scores(model.predict_with(ex.input, SamplingOptions(8, 10, 0)).mean, ex.target).psnr
        rows.setdefault(ex.tags[0].split(" ", 1)[1], []).append((t, f, q))
        print(f"{ex.name:14s} {ex.tags[0]:26s} TIE {t:6.2f}  flat-background {f:6.2f}  qpi {q:6.2f}", flush=True)
    for kind, values in rows.items():
        a = np.array(values)
        below = [(a[:, k] - a[:, 0] < -1).sum() for k in (1, 2)]
        worst = [(a[:, k] - a[:, 0]).min() for k in (1, 2)]
        print(
            f"{kind}: n={len(a)}, means TIE {a[:, 0].mean():.2f} / flat-background {a[:, 1].mean():.2f} / qpi "
            f"{a[:, 2].mean():.2f}; worst against the TIE {worst[0]:+.2f} / {worst[1]:+.2f}; more than 1 dB below "
            f"it: {below[0]} / {below[1]}"
        )


if __name__ == "__main__":
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
