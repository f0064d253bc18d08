"""The napari-cvdm command line."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import untrained_model_file
from napari_cvdm.cli import main
from napari_cvdm.data.metrics import qpi_scores
from napari_cvdm.data.tiff import read_tiff, write_tiff
from napari_cvdm.inference.models import load_model


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "napari_cvdm", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert {"demo", "toy", "simulate", "train", "predict", "evaluate", "bench"} <= listed, out.stdout


def test_console_script_is_installed():
    out = subprocess.run(["napari-cvdm", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "napari-cvdm" in out.stdout


def test_toy_writes_mean_and_std(tmp_path, capsys):
    rc = main(["toy", "--output-dir", str(tmp_path), "--seconds", "2", "--samples", "2", "--steps", "2"])
    assert rc == 0
    assert "PSNR of the CVDM mean" in capsys.readouterr().out
    for name in ("input", "target", "mean", "std"):
        img = read_tiff(tmp_path / f"toy_{name}.tif").data
        assert img.shape == (32, 32) and img.dtype == np.float32 and np.isfinite(img).all()


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit) as info:
        main(["toy", "--samples", "0"])
    assert info.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_train_cli_from_changes_weights_and_keeps_lineage(tmp_path, trained_models):
    sim = tmp_path / "pairs"
    assert main(["simulate", "--task", "sr", "--n", "3", "--size", "32", "--output-dir", str(sim)]) == 0
    out = tmp_path / "tuned.safetensors"
    assert (
        main(
            [
                "train",
                "--task",
                "sr",
                "--pairs",
                str(sim),
                "--from",
                str(trained_models["sr"]),
                "--steps",
                "3",
                "--batch-size",
                "2",
                "--patch-size",
                "16",
                "--validate-every",
                "0",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    parent, child = load_model(trained_models["sr"]), load_model(out)
    assert child.network.config == parent.network.config
    changed = [
        not torch.equal(a, b) for a, b in zip(parent.network.state_dict().values(), child.network.state_dict().values())
    ]
    assert any(changed)
    lineage = child.metadata["training"]["lineage"]
    assert lineage[-1]["path"] == trained_models["sr"].name  # the file, not the machine's folders
    assert lineage[-1]["training"] == {"steps": 3}
    assert child.metadata["training"]["from"] == trained_models["sr"].name
    assert (tmp_path / "tuned.ckpt.safetensors").exists() and (tmp_path / "tuned.log.jsonl").exists()


def test_demo_runs_a_model_and_writes_the_images(tmp_path, trained_models, capsys):
    from napari_cvdm.data.tiff import read_tiff

    assert (
        main(
            [
                "demo",
                "--model",
                str(trained_models["sr"]),
                "--size",
                "32",
                "--samples",
                "2",
                "--steps",
                "2",
                "--output-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "CVDM mean" in out and "richardson-lucy" in out
    mean = read_tiff(tmp_path / "widefield_mean.tif")
    assert mean.data.shape == (64, 64) and mean.pixel_size_um == pytest.approx((0.0313, 0.0313))
    assert read_tiff(tmp_path / "widefield.tif").data.shape == (32, 32)


def test_predict_cli_writes_good_files_and_lists_bad_ones(tmp_path, trained_models, capsys):
    from napari_cvdm.data.tiff import read_tiff, write_tiff

    good = write_tiff(
        tmp_path / "cell.tif", np.random.default_rng(0).random((24, 24)).astype(np.float32), pixel_size_um=0.0626
    )
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    rc = main(
        [
            "predict",
            str(good),
            str(bad),
            "--model",
            str(trained_models["sr"]),
            "--samples",
            "2",
            "--steps",
            "2",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "broken.tif" in err and "1 failed" in err
    mean = read_tiff(tmp_path / "out" / "cell_mean.tif")
    assert mean.data.shape == (48, 48) and mean.data.dtype == np.float32
    assert mean.pixel_size_um == pytest.approx((0.0313, 0.0313))
    assert (tmp_path / "out" / "cell_std.tif").exists() and not (tmp_path / "out" / "broken_mean.tif").exists()


def test_optics_options_of_another_task_are_refused(tmp_path, capsys):
    rc = main(["simulate", "--task", "qpi", "--n", "1", "--size", "32", "--na", "1.1", "--output-dir", str(tmp_path)])
    assert rc == 2 and "--na does not apply to qpi" in capsys.readouterr().err


def test_predict_runs_a_classical_method_and_a_model_at_the_given_optics(tmp_path, capsys):
    from napari_cvdm.data.simulate import simulate_qpi_pair
    from napari_cvdm.physics.fresnel import QPIOptics

    optics = QPIOptics(dz_um=2.0)
    pair = simulate_qpi_pair("cells", (48, 48), np.random.default_rng(0), optics, noise=0.01)
    path = write_tiff(tmp_path / "pair.tif", pair.input, pixel_size_um=0.21)
    out = tmp_path / "out"
    args = ["predict", str(path), "--samples", "1", "--output-dir", str(out)]
    assert main([*args, "--model", "tie", "--dz", "2"]) == 0
    assert "residual" in capsys.readouterr().out
    mean = read_tiff(out / "pair_mean.tif").data
    assert qpi_scores(mean, pair.target).psnr > 10 and read_tiff(out / "pair_residual.tif").data.shape == (2, 48, 48)
    tiny = untrained_model_file(tmp_path, "qpi")
    assert main([*args, "--model", str(tiny), "--dz", "2", "--steps", "1"]) == 0  # by Fresnel similarity
    assert read_tiff(out / "pair_mean.tif").data.shape == (48, 48)


def test_the_gpu_check_script_speaks_the_current_command_line():
    # docs/gpu_check.sh is run unchanged on a lent GPU: every command in it must still parse (a renamed option
    # would only show there, on a machine most sessions never get)
    import shlex
    from pathlib import Path

    from napari_cvdm.cli import build_parser

    script = Path(__file__).parents[1] / "docs" / "gpu_check.sh"
    commands = [shlex.split(line)[1:] for line in script.read_text().splitlines() if line.startswith("cvdm ")]
    assert len(commands) >= 5
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        assert args.device == "cuda", argv


def test_warnings_reach_the_terminal_in_plain_words_once(capsys):
    import warnings

    from napari_cvdm._terminal import plain_warnings

    with plain_warnings("evaluate"):
        for _ in range(2):
            warnings.warn("the image looks background-subtracted", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "napari-cvdm evaluate: warning: the image looks background-subtracted\n"
