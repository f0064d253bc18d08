"""Through-focus stacks (−dz, 0, +dz) of simulated camera crops: the TIE of the outer pair, the iterative retrieval
of the outer pair (with its TIE fallback) and the retrieval fitted to all three planes (what the iterative and
flat-background methods do with a stack), for photo-like fine absorption, smooth absorption (amplitude 0.4–1) and
pure phase objects; PSNR in dB against the true phase.

    python docs/experiments/qpi_stack_planes.py PHOTO_FOLDER   # e.g. ../shared/data/imagenet-sample
"""

import glob
import sys
import warnings

import numpy as np
import torch
from PIL import Image

import napari_cvdm.data.simulate_qpi as sq
from napari_cvdm.data.metrics import qpi_scores
from napari_cvdm.physics.fresnel import QPIOptics, defocus_stack, phase_object
from napari_cvdm.physics.tie import tie_phase
from napari_cvdm.tasks.qpi_condition import fitted_phase, iterative_phase

SIDE = 128


def amplitude_of(kind: str, phase: np.ndarray, photo: str, rng: np.random.Generator, o: QPIOptics) -> np.ndarray:
    if kind == "pure":
        return np.ones(phase.shape)
    if kind == "smooth":
        return sq.absorption_map(phase, rng, o.pixel_um, (0.4, 1.0))
    img = np.asarray(Image.open(photo).convert("L").resize(phase.shape[::-1]), np.float64) / 255
    return 1 - rng.uniform(0.2, 0.6) * (img - img.min()) / np.ptp(img)


def main(folder: str) -> None:
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    o, rng = QPIOptics(), np.random.default_rng(21)
    photos = sorted(glob.glob(f"{folder}/*.JPEG"))
    rows: dict[str, list] = {}
    for i in range(24):
        cls, s, kind = ("cells", "textures")[i % 2], (0.003, 0.01, 0.02)[i % 3], ("photo", "smooth", "pure")[i // 8]
        big, c = sq.crop_of_larger_field((SIDE, SIDE), o)
        phase = sq.phase_map(cls, big, rng, o, None)
        amp = amplitude_of(kind, phase, photos[40 + i], rng, o)
        field = phase_object(torch.from_numpy(phase), torch.from_numpy(amp))
        st = defocus_stack(field, (-1.0, 0.0, 1.0), o.wavelength_um, o.pixel_um).numpy()[:, c : c + SIDE, c : c + SIDE]
        st = (st + rng.normal(0, s, st.shape)).astype(np.float32)
        truth, pair = phase[c : c + SIDE, c : c + SIDE], st[[0, 2]]
        tie = tie_phase(pair[0], pair[1], o.dz_um, o.wavelength_um, o.pixel_um)
        v = [qpi_scores(x, truth).psnr for x in (tie, iterative_phase(pair, o), fitted_phase(st, o))]
        rows.setdefault(kind, []).append(v)
        print(f"{kind:6s} {cls:8s} {s:<6g} TIE {v[0]:6.2f}  pair {v[1]:6.2f}  all planes {v[2]:6.2f}", flush=True)
    for kind, v in rows.items():
        a = np.array(v)
        worst = (a[:, 1:] - a[:, :1]).min(0)
        print(
            f"{kind}: n={len(a)} mean TIE {a[:, 0].mean():.2f}, pair {a[:, 1].mean():.2f}, all planes "
            f"{a[:, 2].mean():.2f}; worst against the TIE: pair {worst[0]:.2f}, all planes {worst[1]:.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
