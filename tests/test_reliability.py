"""Bad inputs and files through the command line and the API: one clear line, nothing half-written."""

import warnings

import numpy as np
import pytest

from napari_cvdm.cli import main
from napari_cvdm.data.tiff import write_tiff
from napari_cvdm.inference.models import load_model


@pytest.mark.parametrize(
    "name, data, task, words",
    [
        ("nan.tif", np.where(np.eye(32, dtype=bool), np.nan, 1.0).astype(np.float32), "sr", "NaN"),
        ("rgb.tif", np.zeros((32, 32, 3), np.uint8), "sr", "RGB"),
        ("one-plane.tif", np.ones((32, 32), np.float32), "qpi", "two planes (2, H, W)"),
        ("one-plane.tif", np.ones((32, 32), np.float32), "qpi", "two planes (2, H, W)"),
        ("tiny.tif", np.ones((8, 12), np.float32), "sr", "at least 16×16"),
    ],
)
def test_bad_images_give_one_line_naming_the_file_and_write_nothing(
    tmp_path, capsys, model_files, name, data, task, words
):
    path = tmp_path / name
    if data.ndim == 3 and data.shape[-1] == 3:
        import tifffile

        tifffile.imwrite(path, data, photometric="rgb")
    else:
        write_tiff(path, data)
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(path),
            "--model",
            str(model_files[task]),
            "--samples",
            "2",
            "--steps",
            "1",
            "--output-dir",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc != 0
    assert name in err and words in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not list(out.glob("*.tif")) if out.exists() else True


@pytest.mark.parametrize(
    "content, words", [(None, "not found"), (b"", "empty"), (b"II*\x00garbage", "contains no image")]
)
def test_missing_empty_and_corrupt_files_are_one_line_errors(tmp_path, capsys, model_files, content, words):
    path = tmp_path / "img.tif"
    if content is not None:
        path.write_bytes(content)
    args = ["predict", str(path), "--model", str(model_files["sr"]), "--samples", "2", "--output-dir", str(tmp_path)]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert words in err and "img.tif" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one line, not a traceback or a repeated summary


def test_integer_negative_and_huge_values_do_not_overflow(model_files):
    model = load_model(model_files["sr"])
    rng = np.random.default_rng(0)
    for image in (
        rng.integers(0, 65536, (32, 32)).astype(np.uint16),
        rng.integers(-(2**31), 2**31 - 1, (32, 32)).astype(np.int32),
        (rng.random((32, 32)) * 1e30).astype(np.float32),
        rng.integers(0, 256, (32, 32)).astype(np.uint8),
    ):
        pred = model.predict(image, n_samples=2, steps=2)
        assert np.isfinite(pred.mean).all() and np.isfinite(pred.std).all()
        lo, hi = float(image.min()), float(image.max())
        span = hi - lo
        assert lo - span <= float(np.median(pred.mean)) <= hi + span  # in the input's units, no wrap-around


def test_flat_image_gives_finite_output_and_a_warning(model_files):
    model = load_model(model_files["sr"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = model.predict(np.full((32, 32), 7, np.uint16), n_samples=2, steps=2)
    assert any("flat" in str(w.message) for w in caught)
    assert np.isfinite(pred.mean).all()


def test_training_on_an_empty_folder_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "pairs" / "inputs").mkdir(parents=True)
    (tmp_path / "pairs" / "targets").mkdir()
    rc = main(
        [
            "train",
            "--task",
            "sr",
            "--pairs",
            str(tmp_path / "pairs"),
            "--steps",
            "5",
            "--output",
            str(tmp_path / "m.safetensors"),
        ]
    )
    err = capsys.readouterr().err
    assert rc != 0 and "inputs" in err and "Traceback" not in err
    assert not (tmp_path / "m.ckpt.safetensors").exists()


def test_debug_flag_shows_the_full_error(tmp_path, model_files):
    from napari_cvdm.data.tiff import TiffReadError

    with pytest.raises(TiffReadError, match="not found"):
        main(
            [
                "--debug",
                "predict",
                str(tmp_path / "missing.tif"),
                "--model",
                str(model_files["sr"]),
                "--samples",
                "2",
                "--output-dir",
                str(tmp_path),
            ]
        )


class _Payload:
    """Unpickling this creates a file: proof that a pickle was (or was not) executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    "suffix, words",
    [(".pt", "refusing"), (".pth", "refusing"), (".ckpt", "refusing"), (".safetensors", "not a valid safetensors")],
)
def test_a_malicious_pickle_is_never_executed(tmp_path, suffix, words):
    import pickle

    from napari_cvdm.inference.models import ModelFileError

    marker = tmp_path / "pwned"
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    with pytest.raises(ModelFileError, match=words):
        load_model(path)
    assert not marker.exists()


def test_a_brightness_beyond_measure_is_said_in_words_not_as_inf(monkeypatch):
    import napari_cvdm.tasks.sr as sr_module
    from napari_cvdm.physics.widefield import WidefieldOptics
    from napari_cvdm.tasks import get_task

    monkeypatch.setattr(sr_module, "photon_level", lambda image, gain: float("inf"))
    image = np.random.default_rng(0).poisson(100, (128, 128)).astype(np.float32)
    (remark,) = get_task("sr").distribution_warnings(image, WidefieldOptics(), {"photon_range": [10, 1000]})
    assert "inf" not in remark and "far more photons" in remark


def test_a_background_subtracted_image_is_told_to_give_the_cameras_counts():
    from napari_cvdm.data.simulate import simulate_sr_pair
    from napari_cvdm.physics.widefield import WidefieldOptics
    from napari_cvdm.tasks import get_task

    rng = np.random.default_rng(3)
    camera = simulate_sr_pair("microtubules", (128, 128), 200.0, rng).input
    ranges = {"photon_range": [10, 1000]}
    task = get_task("sr")
    assert not any("lowest value" in w for w in task.distribution_warnings(camera, WidefieldOptics(), ranges))
    counts = np.round(2.2 * camera + 100).astype(np.uint16)  # offset and gain: nothing to say
    assert not any("lowest value" in w for w in task.distribution_warnings(counts, WidefieldOptics(), ranges))
    subtracted = np.clip(camera - np.median(camera), 0, None)
    (remark,) = [w for w in task.distribution_warnings(subtracted, WidefieldOptics(), ranges) if "lowest value" in w]
    assert remark.startswith("50 % of the pixels") and "background" in remark
    flat = np.full((128, 128), 5.0)  # said to be flat by the condition, not clipped
    assert not any("lowest value" in w for w in task.distribution_warnings(flat, WidefieldOptics(), ranges))
