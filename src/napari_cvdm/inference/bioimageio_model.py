"""A model file as one torch module, image in, mean and std out: the view of a model that bioimage.io model
packages and their runners (bioimageio.core, deepImageJ's Python bridge, ilastik) take (:mod:`napari_cvdm.jobs.export`).

The module rebuilds the network from the model file's metadata (its ``kwargs`` in the package); its state dict is
the network's, under ``network.``. ``forward`` runs the whole CVDM sampling with a fixed seed, so the package's test
output is reproduced on the same device type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .model_files import contents_from_metadata
from .models import CVDMModel
from .predict import SamplingOptions

__all__ = ["CVDMReconstruction"]


class CVDMReconstruction(torch.nn.Module):
    """A CVDM model as ``image → (mean, std)``.

    Parameters
    ----------
    metadata
        The model file's metadata block (``load_model(path).metadata``).
    n_samples, steps, seed
        Sampling: samples per image, steps (``None``: the model's default) and seed.
    """

    def __init__(self, metadata: dict[str, Any], n_samples: int = 8, steps: int | None = None, seed: int = 0):
        super().__init__()
        contents = contents_from_metadata(metadata)
        self.network = contents.network
        self._parts = (contents.task, contents.normalization, contents.optics, metadata)
        self._options = SamplingOptions(n_samples=n_samples, steps=steps, seed=seed, device="cpu")

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, H, W)`` input (``C``: 1 for sr, the two planes (−dz, +dz) for qpi) → mean and calibrated std
        ``(B, 1, H', W')`` (sr: ``H' = 2H``; qpi: ``H' = H``), float32."""
        task, normalization, optics, metadata = self._parts
        model = CVDMModel(self.network.eval(), task, normalization, optics, metadata, None)
        means, stds = [], []
        for item in image.detach().cpu().numpy().astype(np.float32):
            planes = item[0] if task.input_planes == 1 else item
            prediction = model.predict_with(planes, self._options)
            means.append(prediction.mean[None])
            stds.append(prediction.std[None])
        return torch.from_numpy(np.stack(means)).float(), torch.from_numpy(np.stack(stds)).float()
