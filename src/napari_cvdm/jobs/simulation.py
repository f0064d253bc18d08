"""The ``simulate`` command: write simulated pairs as TIFFs in the layout ``train --pairs`` and ``evaluate --data``
read."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.simulate import TEST_SEED, VALIDATION_SEED, load_grayscale_images
from ..data.tiff import write_tiff
from ..tasks import get_task

__all__ = ["SimulationRequest", "write_simulated_pairs"]


@dataclass(frozen=True)
class SimulationRequest:
    """Write simulated pairs as DIR/inputs/NAME.tif and DIR/targets/NAME.tif (the layout train --pairs and
    evaluate --data read).

    The optics are given beside the request.

    Parameters
    ----------
    task
        sr or qpi.
    n
        Number of pairs.
    output_dir
        Folder for inputs/, targets/ and simulation.json.
    seed
        Random seed.
    size
        Input side in pixels (default: the task's).
    classes
        Structure classes (sr) or phase sources (qpi), cycled through (default: the task's training classes).
    images
        Folder of grayscale images to draw phase from (qpi; the images source).
    photons
        A fixed sr signal level in photons per pixel (default: drawn over the training range).
    """

    task: str = field(metadata={"cli": "--task", "choices": ("sr", "qpi")})
    n: int = field(metadata={"cli": "--n"})
    output_dir: Path = field(metadata={"cli": "--output-dir"})
    seed: int = field(default=0, metadata={"cli": "--seed", "parse": int})
    size: int | None = field(default=None, metadata={"cli": "--size"})
    classes: list[str] | None = field(default=None, metadata={"cli": "--classes|--structures|--sources"})
    images: Path | None = field(default=None, metadata={"cli": "--images"})
    photons: float | None = field(default=None, metadata={"cli": "--photons", "positive": True})


def write_simulated_pairs(
    request: SimulationRequest, optics: dict[str, Any] | None = None, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Write simulated pairs as ``DIR/inputs/<class>_<i>.tif`` and ``DIR/targets/<class>_<i>.tif`` (float32, pixel
    sizes in the metadata) and ``DIR/simulation.json``; returns that record.

    Parameters
    ----------
    request
        What to write.
    optics
        Optics values that differ from the task's defaults (``{"dz_um": 1.5}``).
    progress
        ``progress(done, total)`` after each pair.
    """
    task = get_task(request.task)
    o = task.optics_with(optics or {})
    images = load_grayscale_images(request.images) if request.images else None
    classes = task.check_classes(request.classes, with_images=bool(images)) or task.default_classes(bool(images))
    size = request.size or task.simulate_size
    rng = np.random.default_rng(request.seed)
    px = (o.pixel_um, o.pixel_um)
    folder = Path(request.output_dir)
    for i in range(request.n):
        cls = classes[i % len(classes)]
        inp, tgt = task.simulate(cls, size, rng, o, images, request.photons)
        name = f"{cls}_{i:04d}.tif"
        write_tiff(folder / "inputs" / name, inp, pixel_size_um=px, axes="YX" if inp.ndim == 2 else "CYX")
        write_tiff(folder / "targets" / name, tgt, pixel_size_um=task.output_pixel_size(px))
        if progress is not None:
            progress(i + 1, request.n)
    record = {
        "task": task.name,
        "n": request.n,
        "seed": request.seed,
        "optics": o.to_dict(),
        "classes": classes,
        "size": size,
        "photons": request.photons,
        "images": str(request.images) if request.images else None,
        "held_out_seed": request.seed in (TEST_SEED, VALIDATION_SEED),
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "simulation.json").write_text(json.dumps(record, indent=2))
    return record
