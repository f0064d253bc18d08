"""Model files: save/load round trips, validation of foreign and broken files, optics records."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from napari_cvdm.inference.models import ModelFileError, load_model, save_model
from napari_cvdm.physics.widefield import WidefieldOptics
from napari_cvdm.tasks import get_task


def test_save_load_round_trip_gives_identical_predictions(trained_models):
    model = load_model(trained_models["sr"])
    img = np.random.default_rng(0).random((24, 40)).astype(np.float32) * 100
    a = model.predict(img, n_samples=2, steps=3, seed=5)
    b = load_model(trained_models["sr"]).predict(img, n_samples=2, steps=3, seed=5)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    assert model.metadata["training"] == {"steps": 3}
    assert model.default_steps == 4


def test_model_files_are_validated(tmp_path, trained_models):
    pickle_file = tmp_path / "model.pt"
    pickle_file.write_bytes(b"\x80\x04this would be unpickled")
    with pytest.raises(ModelFileError, match="refusing"):
        load_model(pickle_file)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ModelFileError, match="not a valid safetensors"):
        load_model(corrupt)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ModelFileError, match="not a napari-cvdm model"):
        load_model(foreign)
    with pytest.raises(ModelFileError, match="'sr' model, but a 'qpi' model"):
        load_model(trained_models["sr"], task="qpi")
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(trained_models["sr"]), framework="pt") as f:
        meta = json.loads(f.metadata()["napari_cvdm"])
    meta["format_version"] = 99
    future = tmp_path / "future.safetensors"
    save_file(load_file(str(trained_models["sr"])), str(future), metadata={"napari_cvdm": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="version 99"):
        load_model(future)
    meta["format_version"] = 1  # files written before calibrations could weigh in the input's noise still load
    older = tmp_path / "older.safetensors"
    save_file(load_file(str(trained_models["sr"])), str(older), metadata={"napari_cvdm": json.dumps(meta)})
    assert load_model(older).calibration is None
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_model_files_record_the_tasks_optics_and_read_the_old_pixel_size_form(tmp_path, trained_models):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = load_model(trained_models["sr"])
    assert isinstance(model.optics, WidefieldOptics) and model.optics == WidefieldOptics()
    with safe_open(str(trained_models["sr"]), framework="pt") as f:
        meta = json.loads(f.metadata()["napari_cvdm"])
    meta["optics"] = {"pixel_size_um": [0.1, 0.1]}  # what the Fine-tune widget wrote before the optics schema
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(trained_models["sr"])), str(old), metadata={"napari_cvdm": json.dumps(meta)})
    assert load_model(old).optics == WidefieldOptics(pixel_um=0.1)
    meta["optics"] = {"dz_um": 1.0}  # qpi optics in an sr model
    save_file(load_file(str(trained_models["sr"])), str(old), metadata={"napari_cvdm": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="dz_um"):
        load_model(old)
    qpi = get_task("qpi")
    with pytest.raises(TypeError, match="WidefieldOptics"):
        save_model(tmp_path / "x.safetensors", model.network, qpi, qpi.default_normalization(), model.optics)


def test_bundled_models_load_with_their_recorded_optics():
    for name in ("sr", "qpi"):
        model = load_model(name)
        assert model.task is get_task(name) and isinstance(model.optics, model.task.optics_class)
        # the optics proper are the defaults; the simulator's noise may be the one the model was trained at
        optics = model.optics.replace(noise=None) if name == "qpi" else model.optics
        assert optics == model.task.default_optics()


def test_a_qpi_model_file_records_its_noise_range_and_its_conditioning_recipe(tmp_path):
    from napari_cvdm.cli import main

    out = tmp_path / "qpi-small.safetensors"
    args = ["--simulate", "2", "--size", "32", "--steps", "1", "--batch-size", "1", "--patch-size", "32"]
    small = ["--base-channels", "8", "--channel-mults", "1,2", "--validate-every", "0"]
    sharing = ["--authors", "A. Microscopist", "B. Engineer", "--license", "CC-BY-4.0", "--description", "cells"]
    assert main(["train", "--task", "qpi", *args, *small, *sharing, "--output", str(out)]) == 0
    model = load_model(out)
    recipe = model.normalization.retrieval
    assert recipe["dz_um"] == 1.0 and recipe["wavelength_um"] == 0.521 and recipe["iterations"] >= 1
    assert recipe["noise"] == "planes"  # each pair weighed by its own noise
    assert model.metadata["training"]["sharing"] == {
        "authors": ["A. Microscopist", "B. Engineer"],
        "license": "CC-BY-4.0",
        "description": "cells",
    }
    assert model.network.config.cond_channels == 4  # planes, retrieval phase and amplitude
    data = model.metadata["training"]["data"]
    assert data["noise_range"] == [0.003, 0.03] and data["absorption_range"] == [0.8, 1.0]
    assert data["field"] == "camera crop"
    assert model.trained_ranges["fine_absorption_share"] == data["fine_absorption_share"] > 0


def test_a_file_trained_before_a_condition_existed_does_not_claim_it():
    """The bundled qpi was trained before the simulator drew absorption with fine detail; its file does not record
    it, so it reports none rather than today's default mix (the task's other defaults still fill older files)."""
    model = load_model("qpi")
    assert "fine_absorption_share" not in model.metadata["training"]["data"]
    ranges = model.trained_ranges
    assert ranges["fine_absorption_share"] == 0.0 and "fine_absorption_range" not in ranges
    assert ranges["noise_range"] == [0.003, 0.03]
    older = dataclasses.replace(model, metadata={"training": {"data": {"simulate": 10}}})  # no record at all
    assert older.trained_ranges["absorption_range"] == model.task.simulation_ranges()["absorption_range"]


def test_model_files_carry_no_paths_of_the_machine_that_trained_them(tmp_path):
    from importlib.resources import files

    from safetensors import safe_open

    from napari_cvdm.inference.model_files import METADATA_KEY, without_machine_paths

    record = {"command": "/tmp/run/src/napari_cvdm/__main__.py train --from /home/me/sr.safetensors --images=/data/x"}
    record["lineage"] = [{"path": "/tmp/run/parent.safetensors", "url": "https://example.org/a/b"}]
    clean = without_machine_paths(record)
    assert clean["command"] == "napari-cvdm train --from sr.safetensors --images=x"
    assert clean["lineage"] == [{"path": "parent.safetensors", "url": "https://example.org/a/b"}]
    for name in ("sr", "qpi"):
        with safe_open(str(files("napari_cvdm") / "weights" / f"{name}.safetensors"), "pt") as f:
            text = f.metadata()[METADATA_KEY]
        assert not any(root in text for root in ("/tmp/", "/root/", "/home/", "/work/")), name
        assert json.loads(text)["training"]["command"].startswith("napari-cvdm ")


def test_simulated_training_validates_on_as_many_pairs_per_class_as_asked(tmp_path, capsys):
    """One validation pair per class cannot rank weights; --validation-per-class draws more (and refuses 0)."""
    from napari_cvdm.cli import main
    from napari_cvdm.tasks import get_task
    from napari_cvdm.training.training_data import simulated_across_optics, simulated_data

    out = tmp_path / "sr-small.safetensors"
    args = ["--task", "sr", "--simulate", "2", "--size", "32", "--steps", "1", "--batch-size", "1"]
    args += ["--patch-size", "16", "--base-channels", "8", "--channel-mults", "1,2", "--validate-every", "0"]
    args += ["--classes", "er", "microtubules", "--output", str(out)]
    assert main(["train", *args, "--validation-per-class", "3"]) == 0
    assert "on 2 pairs, 6 for validation" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", *args, "--validation-per-class", "0"])
    assert "--validation-per-class: must be a positive integer, got 0" in capsys.readouterr().err
    from napari_cvdm.training.job import TrainingRequest

    with pytest.raises(ValueError, match="--validation-per-class 0: give at least 1"):
        TrainingRequest("sr", out, simulate=2, validation_per_class=0)
    sr = get_task("sr")
    assert len(simulated_data(sr, 2, 0, 32, classes=["er"], per_class=4).validation) == 4
    assert len(simulated_across_optics(sr, 2, 0, 32, classes=["er"], per_class=2).validation) == 2


def test_the_bundled_qpi_fits_nearly_transparent_pairs_longer_and_samples_five_steps():
    """The bundled qpi records the longer fit its nearly transparent pairs get (the code's recipe, not a copy that
    could drift) and the 5 steps it was calibrated at."""
    from napari_cvdm.tasks.qpi_recipes import LONGER_FIT_KEY, TRANSPARENT_FIT, recorded_recipe

    model = load_model("qpi")
    recipe = model.normalization.retrieval
    assert recipe[LONGER_FIT_KEY] == TRANSPARENT_FIT
    assert recorded_recipe(recipe) == model.metadata["training"]["condition_recipe_before"]  # the trained fit
    assert model.default_steps == model.metadata["calibration"]["fitted_on"]["steps"] == 5
