"""The learned `qpi` with its largest scales taken from today's flat-background retrieval ("anchored"): the model's
mean minus the Gaussian low-pass (σ = K Fresnel lengths √(λ·dz); 2.9 is 2.1 µm at the model's optics) of its
difference from the retrieval. Two checks: the held-out pairs of ``qpi_per_pair.py`` (per variant: means, the worst
pair against the TIE, pairs more than 1 dB below it; and each phase's quick residual, in noise units, to see whether
the planes can tell the anchored mean from the model's), and the agreement of the real ±10 / ±20 µm pairs.

    NAPARI_CVDM_FP32=1 python docs/experiments/qpi_anchored.py held-out [N]          # default 2: 48 pairs
    NAPARI_CVDM_FP32=1 python docs/experiments/qpi_anchored.py real FOLDER [K ...]   # FOLDER: the pair_dz*.tif files
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy.ndimage import gaussian_filter
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).parent))
from qpi_per_pair import phases, summary  # noqa: E402

from napari_cvdm import load_model  # noqa: E402
from napari_cvdm.data.metrics import qpi_scores  # noqa: E402
from napari_cvdm.inference.classical import load_method  # noqa: E402
from napari_cvdm.tasks.qpi_checks import quick_residual  # noqa: E402
from napari_cvdm.tasks.qpi_condition import pair_noise  # noqa: E402
from napari_cvdm.tasks.records import interior_rms  # noqa: E402

REAL = {10.0: ("pair_dz10um_bin4_px0.64um.tif", 0.64), 20.0: ("pair_dz20um_bin6_px0.96um.tif", 0.96)}


def anchored(mean: np.ndarray, retrieval: np.ndarray, sigma_px: float) -> np.ndarray:
    """``mean`` ``(H, W)`` rad with the scales above ``sigma_px`` taken from ``retrieval``."""
    return mean - gaussian_filter(mean - retrieval, sigma_px, mode="reflect")


def held_out(n_per_class: int, k: float = 2.9) -> None:
    model = load_model("qpi")
    o = model.optics
    sigma_px = k * np.sqrt(o.wavelength_um * o.dz_um) / o.pixel_um
    rows: dict[str, list[list[float]]] = {}
    for ex, kind, t, f, q in phases(model, n_per_class):
        a = anchored(q, f, sigma_px)
        noise = pair_noise(ex.input)
        quick = [interior_rms(quick_residual(ex.input, p, o) / noise) for p in (q, a)]
        scores = [qpi_scores(p, ex.target).psnr for p in (t, f, q, a)]
        rows.setdefault(kind, []).append(scores)
        print(f"{ex.name:14s} {ex.tags[0]:26s} TIE / flat-background / qpi / anchored "
              f"{' / '.join(f'{v:.2f}' for v in scores)} dB; quick residual qpi {quick[0]:.2f}, anchored "
              f"{quick[1]:.2f}", flush=True)  # fmt: skip
    summary(rows, ("TIE", "flat-background", "qpi", "anchored"))


def real(folder: Path, ks: list[float]) -> None:
    phases: dict[tuple[float, str], np.ndarray] = {}
    for dz, (name, pixel) in REAL.items():
        planes = tifffile.imread(folder / name).astype(np.float32)
        optics = {"dz_um": dz, "pixel_um": pixel, "wavelength_um": 0.532}
        f = load_method("flat-background", optics).predict(planes).mean.astype(np.float64)
        q = load_method("qpi", optics).predict(planes, n_samples=8).mean.astype(np.float64)
        phases[dz, "flat-background"], phases[dz, "qpi"] = f, q
        for k in ks:
            phases[dz, f"anchored K={k:g}"] = anchored(q, f, k * np.sqrt(0.532 * dz) / pixel)
    for method in dict.fromkeys(m for _, m in phases):
        near, far = phases[10.0, method], phases[20.0, method]
        near = resize(near, far.shape, order=1, anti_aliasing=True)
        spans = [np.percentile(p, 99.5) - np.percentile(p, 0.5) for p in (near, far)]
        print(f"{method:18s} ±10 vs ±20 µm: correlation {np.corrcoef(near.ravel(), far.ravel())[0, 1]:.3f}, "
              f"spans {spans[0]:.2f} / {spans[1]:.2f} rad")  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    if len(sys.argv) >= 2 and sys.argv[1] == "held-out":
        held_out(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    elif len(sys.argv) >= 3 and sys.argv[1] == "real":
        real(Path(sys.argv[2]), [float(k) for k in sys.argv[3:]] or [2.9, 1.45])
    else:
        sys.exit(__doc__)
