"""Figure of the real TIRF-SIM pair: the widefield mean of the 9 frames (pixels doubled), Richardson–Lucy tuned on
the pair, the `sr` mean (stated optics, 8 samples), the Wiener SIM reference and the `sr` std; the results put
through the reference's filter and scaled to it by the affine fit, as `evaluate-real` scores them; a 128² input crop.
Printed: per frequency band (cycles per output pixel, Hann-windowed spectra), each result's coherence with the
reference and the gain that would match it there.

    python docs/experiments/rdlsim_figure.py FOLDER OUT.png   # FOLDER: written by rdlsim_sim_reference.py
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from napari_cvdm import load_model
from napari_cvdm.data.metrics import affine_fit
from napari_cvdm.inference.optics_match import model_at
from napari_cvdm.inference.predict import SamplingOptions
from napari_cvdm.physics.widefield import WidefieldOptics, richardson_lucy_sr

STATED = {"pixel_um": 0.0626, "na": 1.35, "wavelength_um": 0.52}
#: What evaluate-real's tuning chose on this pair (Wiener parameter 0.1).
TUNED = {"na": 1.49, "iterations": 20}


def _gray(a: np.ndarray, scale: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(scale, (0.5, 99.8))
    return (np.clip((a - lo) / (hi - lo + 1e-12), 0, 1) * 255).astype(np.uint8)


BANDS = (0.005, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25)


def bands(results: dict[str, np.ndarray], ref: np.ndarray) -> None:
    """Per band: the coherence of each result (already through the reference's filter) with the reference, and the
    least-squares gain from the result to the reference."""
    n = ref.shape[0]
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    win = np.outer(np.hanning(n), np.hanning(n))
    spec = lambda a: np.fft.fft2((a - a.mean()) * win)  # noqa: E731
    r = spec(ref)
    print("band (cycles/output px) | " + " | ".join(f"{a}–{b}" for a, b in zip(BANDS, BANDS[1:])))
    for name, result in results.items():
        e, row = spec(result), []
        for a, b in zip(BANDS, BANDS[1:]):
            m = (f >= a) & (f < b)
            cross = np.vdot(e[m], r[m])
            coherence = abs(cross) / np.sqrt(np.vdot(e[m], e[m]).real * np.vdot(r[m], r[m]).real)
            row.append(f"{coherence:.3f} (gain {cross.real / np.vdot(e[m], e[m]).real:.2f})")
        print(f"{name} | " + " | ".join(row))


def main(folder: Path, out: Path) -> None:
    warnings.simplefilter("ignore")
    wide = tifffile.imread(folder / "rdlsim_wf_mean9.tif")
    ref = tifffile.imread(folder / "rdlsim_sim_wiener.tif").astype(np.float64)
    damping = tifffile.imread(folder / "rdlsim_sim_transfer.tif").astype(np.float64)
    seen = lambda x: np.fft.ifft2(np.fft.fft2(x) * damping).real  # noqa: E731
    optics = WidefieldOptics().replace(**STATED)
    rl = richardson_lucy_sr(wide, optics.replace(na=TUNED["na"]), TUNED["iterations"])
    pred = model_at(load_model("sr"), STATED).predict_with(wide, SamplingOptions(8, None, 0))
    bands({"Richardson–Lucy tuned": seen(rl), "CVDM": seen(pred.mean)}, ref)
    y = x = slice(160, 416)
    tiles = [
        _gray(np.kron(wide, np.ones((2, 2)))[y, x], np.kron(wide, np.ones((2, 2)))[y, x]),
        _gray(affine_fit(seen(rl), ref)[y, x], ref[y, x]),
        _gray(affine_fit(seen(pred.mean), ref)[y, x], ref[y, x]),
        _gray(ref[y, x], ref[y, x]),
        _gray(pred.std[y, x], pred.std[y, x]),
    ]
    canvas = np.full((256, 5 * 260 - 4), 255, np.uint8)
    for k, tile in enumerate(tiles):
        canvas[:, k * 260 : k * 260 + 256] = tile
    Image.fromarray(canvas).save(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
