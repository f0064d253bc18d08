"""napari-cvdm export: a bioimage.io model package that the validator accepts and whose module, rebuilt from the
package alone (its kwargs and weights), reproduces the package's test outputs."""

from __future__ import annotations

import importlib.util
import io
import zipfile

import numpy as np
import pytest
import torch
import yaml

from napari_cvdm.bioimageio_model import CVDMReconstruction
from napari_cvdm.cli import main
from napari_cvdm.jobs.export import ExportRequest, export_bioimageio


def test_the_package_is_valid_and_reproduces_its_test_outputs(tmp_path, capsys):
    pytest.importorskip("bioimageio.spec", reason="the bioimageio extra is not installed")
    out = tmp_path / "sr-package.zip"
    assert main(["export", "--model", "sr", "--output", str(out), "--size", "32", "--authors", "A. Microscopist"]) == 0
    assert "valid-format" in capsys.readouterr().out
    with zipfile.ZipFile(out) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        arrays = {n: np.load(io.BytesIO(z.read(f"test_{n}.npy"))) for n in ("input", "mean", "std")}
        state = torch.load(io.BytesIO(z.read("weights.pt")), weights_only=True)
        card = z.read("README.md").decode()
    assert rdf["authors"] == [{"name": "A. Microscopist"}] and rdf["cite"][0]["doi"]
    assert "## Validation" in card and "NA" in card
    weights = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert weights["import_from"] == "napari_cvdm.bioimageio_model"
    module = CVDMReconstruction(**weights["kwargs"])
    module.load_state_dict(state)
    mean, std = module(torch.from_numpy(arrays["input"]))
    assert arrays["input"].shape == (1, 1, 32, 32) and mean.shape == (1, 1, 64, 64)
    np.testing.assert_allclose(mean.numpy(), arrays["mean"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(std.numpy(), arrays["std"], rtol=1e-4, atol=1e-4)


def test_export_says_what_to_install_and_refuses_other_suffixes(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"\.zip"):
        ExportRequest(model="sr", output=tmp_path / "model.yaml")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n.startswith("bioimageio") else real(n, *a))
    with pytest.raises(ValueError, match=r'pip install "napari-cvdm\[bioimageio\]"'):
        export_bioimageio(ExportRequest(model="sr", output=tmp_path / "m.zip"))
