"""Saturated cameras: simulated pairs (cells and textures, σ 0.005) recorded as raw counts clipped at the 96th or
90th percentile (a plateau at the image's maximum), divided by the empty field; the iterative retrieval with the
saturated pixels left out of its fit (what `--model iterative` does) against the same fit using them; PSNR in dB.

    python docs/experiments/qpi_saturation.py
"""

import warnings

import numpy as np
import torch

from napari_cvdm.data.metrics import qpi_scores
from napari_cvdm.data.simulate_qpi import camera_planes, crop_of_larger_field, phase_map
from napari_cvdm.inference.brightfield_input import BrightfieldInput
from napari_cvdm.inference.classical import classical_method
from napari_cvdm.physics.fresnel import QPIOptics
from napari_cvdm.tasks.qpi_condition import fitted_phase

SIDE, LEVEL = 128, 20000.0


def main() -> None:
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    o, rng = QPIOptics(), np.random.default_rng(4)
    method = BrightfieldInput(classical_method("iterative"), np.full((SIDE, SIDE), LEVEL, np.float32))
    for q in (96, 90):
        gains = []
        for i in range(6):
            big, c = crop_of_larger_field((SIDE, SIDE), o)
            phase = phase_map(("cells", "textures")[i % 2], big, rng, o, None)
            pair = camera_planes(phase, np.ones(big), c, (SIDE, SIDE), o) + rng.normal(0, 0.005, (2, SIDE, SIDE))
            raw = np.minimum(np.round(pair * LEVEL), np.percentile(pair, q) * LEVEL).astype(np.uint16)
            truth = phase[c : c + SIDE, c : c + SIDE]
            left_out = qpi_scores(method.predict_with(raw).mean, truth).psnr
            used = qpi_scores(fitted_phase(raw / LEVEL, o), truth).psnr
            gains.append(left_out - used)
            print(f"clipped at the {q}th percentile, pair {i}: left out {left_out:.2f}, used {used:.2f}", flush=True)
        lo, hi = np.min(gains), np.max(gains)
        print(f"{q}th percentile: mean gain {np.mean(gains):+.2f} dB (min {lo:+.2f}, max {hi:+.2f})")


if __name__ == "__main__":
    main()
