"""The model file format: safetensors weights plus a JSON metadata block under the key ``"napari_cvdm"``.

Writing is atomic (a temporary file, then a rename); reading checks the header, the format version and the task
before any tensor is loaded, and never unpickles anything. :func:`napari_cvdm.inference.models.load_model` builds the
model from what :func:`read_model_file` returns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data._files import atomic_write
from ..data.normalize import Normalization
from ..diffusion.network import CVDMNetwork, NetworkConfig, build_network
from ..physics.optics import Optics
from ..tasks import TASKS, Task, get_task
from .uncertainty import StdCalibration

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "READ_VERSIONS",
    "contents_from_metadata",
    "METADATA_KEY",
    "DEFAULT_STEPS",
    "ModelFileError",
    "ModelFileContents",
    "save_model",
    "write_model_file",
    "model_file_path",
    "read_model_file",
]


FORMAT = "napari-cvdm-model"


#: Written by this version. 2: a calibration may weigh in the task's physics variance (``physics_weight``), which a
#: reader of version 1 would drop silently, reporting a std far too small.
FORMAT_VERSION = 2


#: The versions this version reads.
READ_VERSIONS = (1, 2)


METADATA_KEY = "napari_cvdm"


#: Sampling steps of a model file that records none.
DEFAULT_STEPS = 20


_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".h5", ".keras")


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and what is wrong."""


def save_model(
    path: str | Path,
    network: CVDMNetwork,
    task: Task | str,
    normalization: Normalization,
    optics: Optics,
    training: dict[str, Any] | None = None,
    default_steps: int = DEFAULT_STEPS,
    name: str | None = None,
) -> Path:
    """Write a model file (atomically: a temporary file, then a rename).

    Parameters
    ----------
    path
        Output ``.safetensors`` file.
    network
        The network whose weights are saved (pass the EMA copy).
    task, normalization, optics
        Recorded so that the file is self-describing (``optics``: an instance of the task's optics class).
    training
        Provenance: data, steps, seed, parent model (``from``), command, ...
    default_steps
        Sampling steps used by default.
    """
    from .._version import __version__

    path = Path(path)
    task = get_task(task)
    if path.suffix != ".safetensors":
        raise ModelFileError(f"{path}: model files must end in .safetensors")
    if not isinstance(optics, task.optics_class):
        raise TypeError(f"a {task.name} model records {task.optics_class.__name__}, got {type(optics).__name__}")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name or path.stem,
        "task": task.name,
        "network": network.config.to_dict(),
        "normalization": normalization.to_dict(),
        "optics": optics.to_dict(),
        "sampling": {"default_steps": int(default_steps)},
        "training": without_machine_paths(training or {}),
        "napari_cvdm_version": __version__,
    }
    return write_model_file(path, network, meta)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/\"',;:=]+/)+([^\s/\"',;:=]*)")


def without_machine_paths(value: Any) -> Any:
    """``value`` (a model file's provenance: nested dicts, lists, strings) with the folders of absolute paths
    dropped — a file keeps its name, the package's entry point becomes ``napari-cvdm`` — so that a shared model
    file does not carry the layout of the machine that trained it."""
    if isinstance(value, dict):
        return {k: without_machine_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_machine_paths(v) for v in value]
    if not isinstance(value, str):
        return value
    entry = re.sub(r"\S*/napari_cvdm/__main__\.py", "napari-cvdm", value)
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), entry)


def write_model_file(path: Path, network: CVDMNetwork, meta: dict[str, Any]) -> Path:
    """The network's weights (float32) and ``meta`` as a model file, written atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in network.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(meta)}))
    return path


def _read_metadata(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ModelFileError(f"{path}: not a valid safetensors file ({err})") from None
    if "checkpoint" in header and METADATA_KEY not in header:
        model = path.name.replace(".ckpt.safetensors", ".safetensors")
        raise ModelFileError(
            f"{path}: a training checkpoint, not a model (it holds the optimizer's state to resume training: "
            f"napari-cvdm train … --resume); the model the run writes is {model}"
        )
    if METADATA_KEY not in header:
        raise ModelFileError(
            f"{path}: a safetensors file, but not a napari-cvdm model (no '{METADATA_KEY}' "
            "metadata); it may belong to another program"
        )
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: the model metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: unknown model format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    version = meta.get("format_version")
    if version not in READ_VERSIONS:
        raise ModelFileError(
            f"{path}: model format version {version} is not supported by this napari-cvdm "
            f"(it reads versions {', '.join(map(str, READ_VERSIONS))}); update napari-cvdm or re-export the model"
        )
    if meta.get("task") not in TASKS:
        raise ModelFileError(f"{path}: unknown task {meta.get('task')!r} (expected {' or '.join(map(repr, TASKS))})")
    return meta


def _recorded_optics(task: Task, recorded: dict[str, Any] | None) -> Optics:
    """The optics block of a model file. Files written by the Fine-tune widget before the optics had one schema
    record ``{"pixel_size_um": [y, x]}`` (or nothing): they become the task's default optics at that pixel size."""
    recorded = dict(recorded or {})
    if "pixel_size_um" in recorded:
        return task.default_optics().replace(pixel_um=float(recorded.pop("pixel_size_um")[-1]), **recorded)
    return task.optics_from_dict(recorded)


def model_file_path(name_or_path: str | Path, bundled: dict[str, Path]) -> Path:
    """The file behind a model name: a bundled model's file, or ``name_or_path`` once it is known to be a model
    file that exists.

    Raises
    ------
    ModelFileError
        A bundled model missing from the installation, a pickle-based file (refused before it is opened), a file
        that does not exist or does not end in ``.safetensors``.
    """
    if str(name_or_path) in bundled:
        path = bundled[str(name_or_path)]
        if not path.exists():
            raise ModelFileError(
                f"the bundled '{name_or_path}' model is not in this installation ({path} is "
                "missing); train one with 'napari-cvdm train' or pass a model file"
            )
        return path
    path = Path(name_or_path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelFileError(
            f"{path}: refusing to load a '{path.suffix}' file — such files are Python pickles "
            "that can run arbitrary code; napari-cvdm only loads .safetensors model files"
        )
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(f"{path}: not a model file (napari-cvdm model files end in .safetensors)")
    return path


@dataclass(frozen=True)
class ModelFileContents:
    """What a model file holds, checked: the network with its weights (in eval mode), its task, normalisation and
    optics, and the whole metadata block."""

    network: CVDMNetwork
    task: Task
    normalization: Normalization
    optics: Optics
    metadata: dict[str, Any]


def read_model_file(path: Path, task: str | None = None) -> ModelFileContents:
    """Read and check a model file (``task``: the model must be for this task).

    Raises
    ------
    ModelFileError
        Corrupt or foreign safetensors, unsupported format version, wrong task, invalid optics, or weights that do
        not match the recorded architecture.
    """
    from safetensors.torch import load_file

    meta = _read_metadata(path)
    model_task = get_task(meta["task"])
    if task is not None and model_task is not get_task(task):
        raise ModelFileError(
            f"{path}: this is a '{model_task.name}' model, but a '{get_task(task).name}' model is needed"
        )
    contents = contents_from_metadata(meta, str(path))
    try:
        contents.network.load_state_dict(load_file(str(path)), strict=True)
    except Exception as err:
        raise ModelFileError(f"{path}: the weights do not match the recorded architecture ({err})") from None
    return contents


def contents_from_metadata(meta: dict[str, Any], where: str = "the model") -> ModelFileContents:
    """A model file's metadata block made into its parts, the network freshly initialised (load its weights
    next).

    Raises
    ------
    ModelFileError
        Invalid architecture, normalisation, optics or calibration (``where`` names the file in the message).
    """
    model_task = get_task(meta["task"])
    try:
        config = NetworkConfig.from_dict(meta["network"])
        normalization = Normalization(**meta["normalization"])
        optics = _recorded_optics(model_task, meta.get("optics"))
        if meta.get("calibration"):
            StdCalibration.from_dict(meta["calibration"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(
            f"{where}: invalid architecture, normalisation, optics or calibration in the metadata ({err})"
        ) from None
    return ModelFileContents(build_network(config).eval(), model_task, normalization, optics, meta)
