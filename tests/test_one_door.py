"""One door per reconstruction: an image given to ``predict`` (the API, the command line, a classical method, a
model at other optics, camera planes) is checked and copied once, and its stated pixel size is checked there."""

import numpy as np

from napari_cvdm.cli import main
from napari_cvdm.data.tiff import write_tiff
from napari_cvdm.inference.brightfield_input import with_brightfield_input
from napari_cvdm.inference.classical import classical_method
from napari_cvdm.inference.models import load_model
from napari_cvdm.inference.optics_match import at_optics
from napari_cvdm.inference.predict import SamplingOptions
from napari_cvdm.inference.reconstructor import Reconstructor

OPTIONS = SamplingOptions(n_samples=2, steps=2)


def _widefield(shape=(32, 32)):
    return np.random.default_rng(0).uniform(10, 20, shape).astype(np.float32)


def _pair(size=32):
    return (1 + 0.05 * np.random.default_rng(1).standard_normal((2, size, size))).astype(np.float32)


def test_a_model_checks_an_image_once(trained_models, input_checks):
    sr, qpi = load_model(trained_models["sr"]), load_model(trained_models["qpi"])
    for model, image in ((sr, _widefield()), (sr, _widefield((2, 32, 32))), (qpi, _pair())):
        input_checks.clear()
        prediction = model.predict_with(image, OPTIONS)
        assert len(input_checks) == 1, (model.task.name, input_checks)
        assert prediction.residual is not None and prediction.mean.shape[-2:] == (32 * model.task.gain,) * 2
    checked = sr.given(_widefield(), (0.0626, 0.0626))
    assert sr.given(checked) is checked and checked.pixel_um == (0.0626, 0.0626) and checked.shape == (32, 32)


def test_models_at_other_optics_classical_methods_and_camera_planes_check_once(trained_models, input_checks):
    sr, qpi = load_model(trained_models["sr"]), load_model(trained_models["qpi"])
    runs = [
        (at_optics(sr, {"na": 1.0}), _widefield()),
        (classical_method("richardson-lucy"), _widefield()),
        (with_brightfield_input(at_optics(qpi, {"dz_um": 1.5})), _pair()),
        (with_brightfield_input(classical_method("tie")), np.stack([_pair()[0], np.ones((32, 32)), _pair()[1]])),
    ]
    for reconstructor, image in runs:
        assert isinstance(reconstructor, Reconstructor)
        input_checks.clear()
        reconstructor.predict_with(reconstructor.given(image, (0.1, 0.1)), OPTIONS)
        assert len(input_checks) == 1, (reconstructor.name, input_checks)


def test_the_command_line_checks_a_file_once(trained_models, tmp_path, input_checks, capsys):
    path = tmp_path / "wf.tif"
    write_tiff(path, _widefield(), pixel_size_um=(0.0626, 0.0626))
    args = ["predict", str(path), "--model", str(trained_models["sr"]), "--samples", "2", "--steps", "2"]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 0
    assert input_checks == [(32, 32)]


def test_a_stated_pixel_size_far_from_the_optics_is_said_by_the_result(trained_models):
    model = load_model(trained_models["sr"])
    near = model.predict_with(model.given(_widefield(), (0.0626, 0.0626)), OPTIONS)
    far = model.predict_with(model.given(_widefield(), (0.2, 0.2)), OPTIONS)
    assert not any("pixels are 200.0 nm" in w for w in near.warnings)
    assert any("pixels are 200.0 nm" in w for w in far.warnings), far.warnings
    rl = classical_method("richardson-lucy")
    assert any("pixels are 200.0 nm" in w for w in rl.predict_with(rl.given(_widefield(), (0.2, 0.2))).warnings)
