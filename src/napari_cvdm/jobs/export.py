"""``napari-cvdm export``: a model file as a bioimage.io model package (a .zip that the model zoo, bioimageio.core,
deepImageJ and ilastik read): the model card (task, optics, training, evaluation, limits, citation), a cover, test
input and outputs made by the model itself, and the weights with the module that runs them
(:class:`~napari_cvdm.bioimageio_model.CVDMReconstruction`, imported from this package).

Needs ``bioimageio.spec`` (``pip install "napari-cvdm[bioimageio]"``); the package is validated as it is written.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..inference.bioimageio_model import CVDMReconstruction
from ..inference.layers import robust_limits
from ..inference.models import CVDMModel, load_model

__all__ = ["ExportRequest", "export_bioimageio", "model_card"]

#: The method's paper.
CITATION = (
    "della Maggiora G., Croquevielle L. A., Deshpande N., Horsley H., Heinis T., Yakimovich A. Conditional "
    "Variational Diffusion Models. ICLR 2024.",
    "10.48550/arXiv.2312.02246",
)


@dataclass(frozen=True)
class ExportRequest:
    """Write a model file as a bioimage.io model package (.zip), validated with bioimageio.spec.

    Parameters
    ----------
    model
        sr, qpi or a .safetensors model file.
    output
        The package to write (.zip).
    authors
        Who made the model (default: the model file's authors, else napari-cvdm developers).
    license
        SPDX licence of the weights (default: the model file's, else CC-BY-4.0).
    description
        One sentence on what the model does and for which microscope (default: from the task and its optics).
    size
        Side of the test input in pixels (simulated at the model's optics).
    """

    model: str = field(metadata={"cli": "--model"})
    output: Path = field(metadata={"cli": "--output"})
    authors: list[str] | None = field(default=None, metadata={"cli": "--authors"})
    license: str | None = field(default=None, metadata={"cli": "--license"})
    description: str | None = field(default=None, metadata={"cli": "--description"})
    size: int = field(default=64, metadata={"cli": "--size"})

    def __post_init__(self) -> None:
        if Path(self.output).suffix != ".zip":
            raise ValueError(f"{self.output}: a bioimage.io package is a .zip file")


def model_card(model: CVDMModel, description: str) -> str:
    """The package's documentation (Markdown): what the model does, its optics, training, evaluation, limits."""
    training = model.metadata.get("training", {})
    calibration = model.metadata.get("calibration") or {}
    lines = [
        f"# {model.name}: CVDM {model.task.title}",
        "",
        description,
        "",
        "## Optics it was trained for",
        "",
        model.optics.describe(),
        "",
        "## Training",
        "",
        f"{training.get('steps', '?')} steps; data: {json.dumps(training.get('data', {}))[:600]}",
        "",
        "## Validation",
        "",
        "The std is calibrated on held-out simulated data so that about 95 % of the error lies within ±2σ"
        if calibration
        else "The std is the samples' spread (not calibrated).",
        "Figures on held-out and real data: docs/models.md of napari-cvdm (`napari-cvdm evaluate --model ...`).",
        "",
        "## Use",
        "",
        f"Input: {_input_words(model)}. Outputs: the mean of the samples ({model.task.value_units}) and its std. "
        "In napari-cvdm every run is also checked against its input (the residual): run it there to see it. "
        "The weights run through napari_cvdm.bioimageio_model.CVDMReconstruction: install napari-cvdm where the "
        "package is run.",
        "",
        "## Limits",
        "",
        "Trained on simulated images of the optics above; other optics are run by physics similarity in "
        "napari-cvdm, not here. Garbage in gives a confident-looking mean: read the std and the residual.",
        "",
        f"Citation: {CITATION[0]}",
    ]
    return "\n".join(lines) + "\n"


def _input_words(model: CVDMModel) -> str:
    if model.task.input_planes == 2:
        return "the two defocused planes (−dz, +dz) as channels, divided by the background"
    return "one widefield image (any linear unit) as its only channel; the output is on a twice finer grid"


def _test_tensors(model: CVDMModel, size: int, folder: Path, module: CVDMReconstruction) -> dict[str, Path]:
    """A simulated input at the model's optics ``(1, C, size, size)`` and the module's mean and std of it, as
    .npy; the same as TIFF samples and a cover (input, mean, std side by side)."""
    from PIL import Image

    from ..data.tiff import write_tiff

    rng = np.random.default_rng(0)
    image, _ = model.task.simulate(model.task.default_classes()[0], size, rng, model.optics)
    x = np.asarray(image, np.float32).reshape(1, -1, size, size)
    mean, std = (t.numpy() for t in module(torch.from_numpy(x)))
    files = {"input": x, "mean": mean, "std": std}
    out = {}
    for name, arr in files.items():
        np.save(folder / f"test_{name}.npy", arr)
        out[name] = folder / f"test_{name}.npy"
        out[f"sample_{name}"] = write_tiff(folder / f"sample_{name}.tif", arr[0], axes="CYX")
    tiles = [files["input"][0, 0], mean[0, 0], std[0, 0]]
    side = mean.shape[-1]
    scaled = [np.asarray(Image.fromarray(_to_8bit(t)).resize((side, side))) for t in tiles]
    Image.fromarray(np.concatenate(scaled, axis=1)).convert("RGB").save(folder / "cover.png")
    out["cover"] = folder / "cover.png"
    return out


def _to_8bit(values: np.ndarray) -> np.ndarray:
    lo, hi = robust_limits(values, 0.5, 99.5)
    return (np.clip((values - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def _axes(spec: Any, model: CVDMModel, channels: list[str], output: bool) -> list[Any]:
    """Batch, channel, y, x: inputs of any size from 16 pixels, outputs sized from the input (sr: twice)."""
    scale = 1.0 / model.task.gain if output else 1.0
    space = []
    for axis in ("y", "x"):
        if output:
            size = spec.SizeReference(tensor_id=spec.TensorId("input"), axis_id=spec.AxisId(axis))
            space.append(spec.SpaceOutputAxis(id=spec.AxisId(axis), size=size, scale=scale))
        else:
            space.append(spec.SpaceInputAxis(id=spec.AxisId(axis), size=spec.ParameterizedSize(min=16, step=1)))
    names = [spec.Identifier(c) for c in channels]
    return [spec.BatchAxis(), spec.ChannelAxis(channel_names=names), *space]


def _description(request: ExportRequest, model: CVDMModel, files: dict[str, Path], folder: Path) -> Any:
    from bioimageio.spec.model import v0_5 as spec

    recorded = model.metadata.get("training", {}).get("sharing") or {}
    authors = request.authors or recorded.get("authors") or ["napari-cvdm developers"]
    words = (
        request.description or f"CVDM {model.task.title} with a calibrated per-pixel std, {model.optics.describe()}."
    )
    (folder / "README.md").write_text(model_card(model, words))
    channels = ["minus_dz", "plus_dz"] if model.task.input_planes == 2 else ["widefield"]
    inputs = [
        spec.InputTensorDescr(
            id=spec.TensorId("input"),
            axes=_axes(spec, model, channels, output=False),
            test_tensor=spec.FileDescr(source=files["input"]),
            sample_tensor=spec.FileDescr(source=files["sample_input"]),
        )
    ]
    outputs = [
        spec.OutputTensorDescr(
            id=spec.TensorId(name),
            axes=_axes(spec, model, [name], output=True),
            test_tensor=spec.FileDescr(source=files[name]),
            sample_tensor=spec.FileDescr(source=files[f"sample_{name}"]),
        )
        for name in ("mean", "std")
    ]
    return spec.ModelDescr(
        name=f"napari-cvdm {model.name}",
        description=words,
        authors=[spec.Author(name=a) for a in authors],
        cite=[spec.CiteEntry(text=CITATION[0], doi=spec.Doi(CITATION[1]))],
        license=spec.LicenseId(request.license or recorded.get("license") or "CC-BY-4.0"),
        documentation=spec.FileDescr(source=folder / "README.md"),
        covers=[spec.FileDescr(source=files["cover"])],
        tags=["cvdm", "diffusion", "uncertainty", model.task.name, *model.task.title.split()],
        inputs=inputs,
        outputs=outputs,
        weights=_weights(spec, model, folder),
    )


def _weights(spec: Any, model: CVDMModel, folder: Path) -> Any:
    kwargs = {"metadata": model.metadata, **EXPORT_SAMPLING}
    architecture = spec.ArchitectureFromLibraryDescr(
        callable=spec.Identifier("CVDMReconstruction"), import_from="napari_cvdm.bioimageio_model", kwargs=kwargs
    )
    return spec.WeightsDescr(
        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
            source=folder / "weights.pt",
            architecture=architecture,
            pytorch_version=spec.Version(torch.__version__.split("+")[0]),
        )
    )


#: How the packaged module samples (the test outputs are made with it).
EXPORT_SAMPLING = {"n_samples": 8, "steps": None, "seed": 0}


def export_bioimageio(request: ExportRequest) -> tuple[Path, str]:
    """Write and validate the package; returns its path and the validation status (``valid-format``).

    Raises
    ------
    ValueError
        bioimageio.spec missing (the message names the extra), or a package the validator refuses.
    """
    if importlib.util.find_spec("bioimageio") is None or importlib.util.find_spec("bioimageio.spec") is None:
        raise ValueError('export needs bioimageio.spec: pip install "napari-cvdm[bioimageio]"')
    from bioimageio.spec import load_description, save_bioimageio_package

    model = load_model(request.model)
    module = CVDMReconstruction(model.metadata, **EXPORT_SAMPLING)
    module.network.load_state_dict(model.network.state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.save(module.state_dict(), folder / "weights.pt")
        files = _test_tensors(model, request.size, folder, module)
        descr = _description(request, model, files, folder)
        Path(request.output).parent.mkdir(parents=True, exist_ok=True)
        written = Path(save_bioimageio_package(descr, output_path=Path(request.output)))
    status = load_description(written).validation_summary.status
    if status not in ("valid-format", "passed"):
        raise ValueError(f"{written}: the bioimage.io validator says {status}")
    return written, status
