"""napari sample-data contributions, simulated offline (no napari import).

File > Open Sample > CVDM offers one image pair per task, drawn by the
simulators with a fixed seed and the bundled models' optics, with their
pixel sizes so that a reconstruction overlays them.
"""

from __future__ import annotations

import numpy as np

from .data.simulate import simulate_qpi_pair, simulate_sr_pair
from .inference.layers import LayerData, robust_limits
from .physics.fresnel import QPIOptics
from .physics.widefield import WidefieldOptics
from .tasks import get_task

__all__ = ["sr_sample", "qpi_sample", "SAMPLE_SIZE"]

#: Side of the sample inputs in pixels.
SAMPLE_SIZE = 256
_SEED = 20240501


def sr_sample() -> list[LayerData]:
    """A simulated widefield image of microtubules (256², 62.6 nm pixels) and its SIM-like target (512²)."""
    optics = WidefieldOptics()
    pair = simulate_sr_pair("microtubules", (SAMPLE_SIZE, SAMPLE_SIZE), 50.0, np.random.default_rng(_SEED), optics)
    scale = (optics.pixel_um, optics.pixel_um)
    target_scale, target_translate = get_task("sr").output_geometry(scale, (0.0, 0.0), plane_axis=False)
    units = ("µm", "µm")
    return [
        (
            pair.input,
            {
                "name": "widefield",
                "scale": scale,
                "units": units,
                "contrast_limits": robust_limits(pair.input),
                "metadata": {"pixel_size_um": scale},
            },
            "image",
        ),
        (
            pair.target,
            {
                "name": "SIM-like target",
                "scale": target_scale,
                "translate": target_translate,
                "units": units,
                "visible": False,
                "contrast_limits": robust_limits(pair.target),
                "metadata": {"pixel_size_um": target_scale},
            },
            "image",
        ),
    ]


def qpi_sample() -> list[LayerData]:
    """A simulated pair of defocused brightfield images of cells, ``(2, 256, 256)`` at (−1, +1) µm, and the
    phase (radians) they were made from; 0.21 µm pixels."""
    optics = QPIOptics()
    pair = simulate_qpi_pair("cells", (SAMPLE_SIZE, SAMPLE_SIZE), np.random.default_rng(_SEED), optics)
    px = optics.pixel_um
    return [
        (
            pair.input,
            {
                "name": "brightfield ±1 µm",
                "scale": (2 * optics.dz_um, px, px),
                "translate": (-optics.dz_um, 0.0, 0.0),
                "units": ("µm", "µm", "µm"),
                "axis_labels": ("z", "y", "x"),
                "contrast_limits": robust_limits(pair.input),
                "metadata": {"pixel_size_um": (px, px)},
            },
            "image",
        ),
        (
            pair.target,
            {
                "name": "phase (ground truth)",
                "scale": (px, px),
                "units": ("µm", "µm"),
                "visible": False,
                "colormap": "gray",
                "contrast_limits": robust_limits(pair.target),
                "metadata": {"pixel_size_um": (px, px)},
            },
            "image",
        ),
    ]
