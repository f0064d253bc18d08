"""predict over many files: torchrun ranks, job-array shards, continuing after a crash (issue 18)."""

import re

import numpy as np
import pytest
import tifffile

from conftest import run_torchrun
from napari_cvdm.cli import main
from napari_cvdm.data.tiff import read_tiff, write_tiff
from napari_cvdm.jobs.batch import file_seed, outputs_of, parse_shard


@pytest.fixture
def five_files(tmp_path):
    """Five small widefield files, one of them a 3-plane stack."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        shape = (3, 24, 32) if i == 2 else (24, 32)
        paths.append(
            write_tiff(
                tmp_path / "in" / f"cell{i}.tif", rng.random(shape).astype(np.float32) * 100, pixel_size_um=0.0626
            )
        )
    return paths


def _predict(model, paths, out, *extra):
    return [
        "predict",
        *map(str, paths),
        "--model",
        str(model),
        "--samples",
        "2",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--output-dir",
        str(out),
        *extra,
    ]


def _outputs(out):
    return {p.name: read_tiff(p).data for p in sorted(out.glob("*.tif"))}


def _checks(stdout: str) -> dict[str, str]:
    """``{file name: residual RMS}`` as predict prints them."""
    return dict(re.findall(r"(cell\d\.tif): .*\(residual ([\d.]+)× the noise\)", stdout))


def test_two_gloo_ranks_write_every_output_once_equal_to_one_process(tmp_path, five_files, model_files, capsys):
    assert main(_predict(model_files["sr"], five_files, tmp_path / "one")) == 0
    proc = run_torchrun(_predict(model_files["sr"], five_files, tmp_path / "two"), 29531)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("5 done, 0 already complete, 0 failed") == 1  # one summary, from rank 0
    alone = _checks(capsys.readouterr().out)
    assert len(alone) == 5 and _checks(proc.stdout) == alone  # the stack's check survives its planes' assembly
    one, two = _outputs(tmp_path / "one"), _outputs(tmp_path / "two")
    assert sorted(one) == sorted(two) and len(one) == 15  # mean, std and residual of five files
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
        assert read_tiff(tmp_path / "one" / name).pixel_size_um == read_tiff(tmp_path / "two" / name).pixel_size_um
    assert two["cell2_mean.tif"].shape == (3, 48, 64) and two["cell2_residual.tif"].shape == (3, 24, 32)
    assert read_tiff(tmp_path / "two" / "cell2_residual.tif").pixel_size_um == read_tiff(five_files[2]).pixel_size_um
    assert not (tmp_path / "two" / ".cvdm-parts").exists() and not list((tmp_path / "two").glob(".*"))


def test_shards_cover_every_file_exactly_once(tmp_path, five_files, model_files):
    for k in (0, 1):
        assert main(_predict(model_files["sr"], five_files, tmp_path / f"s{k}", "--shard", f"{k}/2")) == 0
    names = [p.name for k in (0, 1) for p in (tmp_path / f"s{k}").glob("*_mean.tif")]
    assert sorted(names) == sorted(f"{p.stem}_mean.tif" for p in five_files)
    with pytest.raises(ValueError, match="0..N-1"):
        parse_shard("2/2")


def test_skip_existing_completes_only_what_a_crash_left_missing(tmp_path, five_files, model_files, capsys):
    out = tmp_path / "out"
    assert main(_predict(model_files["sr"], five_files, out)) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    mean0, *_ = outputs_of(five_files[0], out)
    mean0.unlink()  # the crash: one output missing, and one left half-written under its temporary name
    mean3, *_ = outputs_of(five_files[3], out)
    (out / f".{mean3.name}.abc.tmp").write_bytes(b"half")
    mean3.unlink()
    capsys.readouterr()
    assert main(_predict(model_files["sr"], five_files, out, "--skip-existing")) == 0
    assert "2 done, 3 already complete, 0 failed" in capsys.readouterr().out
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    rewritten = {name for name in after if after[name] != before.get(name)}
    assert rewritten == {
        mean0.name,
        "cell0_std.tif",
        "cell0_residual.tif",
        mean3.name,
        "cell3_std.tif",
        "cell3_residual.tif",
    }
    assert not list(out.glob(".*"))  # the half-written leftover is gone


def test_every_file_has_its_own_seed_from_its_name_and_the_users_seed():
    assert file_seed("a/cell0.tif", 0) == file_seed("b/cell0.tif", 0)  # not the folder, order or rank
    assert len({file_seed(f"cell{i}.tif", 0) for i in range(100)}) == 100
    assert file_seed("cell0.tif", 0) != file_seed("cell0.tif", 1)


def test_folders_and_globs_are_inputs_and_outputs_never_overwrite_each_other(tmp_path):
    from napari_cvdm.jobs.batch import check_outputs_apart, expand_inputs

    for folder in ("a", "b", "out"):
        (tmp_path / folder).mkdir()
    for name in ("a/x.tif", "a/y.tif", "b/x.tif", "out/x_mean.tif", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    assert expand_inputs([a], out) == [a / "x.tif", a / "y.tif"]  # the folder's TIFFs, sorted
    assert expand_inputs([str(tmp_path / "*" / "x*.tif")], out) == [a / "x.tif", b / "x.tif"]  # not out/x_mean.tif
    assert expand_inputs([a / "y.tif", a], out) == [a / "y.tif", a / "x.tif"]  # each file once, in the order given
    with pytest.raises(ValueError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.czi")])
    with pytest.raises(ValueError, match="without images"):
        expand_inputs([_empty(tmp_path)])
    with pytest.raises(ValueError, match=r"a/x.tif and .*b/x.tif would both write"):
        check_outputs_apart(expand_inputs([a, b]), out)


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_predict_needs_neither_samples_nor_an_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tiff(tmp_path / "wf.tif", np.random.default_rng(0).poisson(30, (32, 32)).astype(np.float32))
    assert main(["predict", "wf.tif", "--model", "bicubic"]) == 0
    assert (tmp_path / "cvdm-output" / "wf_mean.tif").exists()


def test_outputs_keep_the_inputs_axes_pixel_size_and_z_spacing(tmp_path):
    """A time-lapse stays a time-lapse and channels stay channels (they were written back as Z slices); a Z stack
    keeps its spacing; a qpi pair's phase loses the plane axis and its residual keeps the planes as Z."""
    from napari_cvdm.data.tiff import output_axes, read_tiff
    from napari_cvdm.inference.classical import load_method
    from napari_cvdm.inference.predict import SamplingOptions
    from napari_cvdm.jobs.file_predict import predict_file

    assert output_axes("CTYX", 4) is None and output_axes("QYX", 3) == "ZYX" and output_axes("TCYX", 3) == "TYX"
    rng = np.random.default_rng(0)
    stack = rng.poisson(50, (3, 24, 24)).astype(np.float32)
    for axes, extra in (("TYX", {}), ("CYX", {}), ("ZYX", {"spacing": 0.5})):
        path = tmp_path / f"{axes}.tif"
        tifffile.imwrite(
            path, stack, imagej=True, resolution=(1 / 0.1, 1 / 0.1), metadata={"axes": axes, "unit": "um", **extra}
        )
        predict_file(load_method("bicubic"), path, SamplingOptions(), tmp_path / "out")
        mean = read_tiff(tmp_path / "out" / f"{axes}_mean.tif")
        assert mean.axes == axes and mean.data.shape == (3, 48, 48)
        assert mean.pixel_size_um == pytest.approx((0.05, 0.05))
        assert mean.z_spacing_um == (pytest.approx(0.5) if axes == "ZYX" else None)
    pair = tmp_path / "pair.tif"
    tifffile.imwrite(pair, rng.normal(1, 0.01, (2, 32, 32)).astype(np.float32), photometric="minisblack")
    predict_file(load_method("tie"), pair, SamplingOptions(), tmp_path / "out")
    assert read_tiff(tmp_path / "out" / "pair_mean.tif").axes == "YX"
    assert read_tiff(tmp_path / "out" / "pair_residual.tif").axes == "ZYX"


def test_outputs_record_how_they_were_made(tmp_path):
    import json

    from napari_cvdm.inference.classical import load_method
    from napari_cvdm.inference.predict import SamplingOptions
    from napari_cvdm.jobs.file_predict import predict_file

    path = tmp_path / "cells.tif"
    write_tiff(path, np.random.default_rng(0).poisson(50, (24, 24)).astype(np.float32), pixel_size_um=0.0626)
    predict_file(load_method("sr"), path, SamplingOptions(n_samples=2, steps=2, seed=3), tmp_path / "sr")
    made = json.loads(read_tiff(tmp_path / "sr" / "cells_mean.tif").info)
    assert made["method"] == "CVDM" and made["samples"] == 2 and made["steps"] == 2 and made["device"] == "cpu"
    assert made["precision"] in ("fp32", "bf16") and made["threads"] >= 1 and made["software"].startswith("napari-cvdm")
    assert made["seed"] == file_seed(path, 3) and "NA" in made["optics"]
    predict_file(load_method("bicubic"), path, SamplingOptions(), tmp_path / "bicubic")
    made = json.loads(read_tiff(tmp_path / "bicubic" / "cells_std.tif").info)
    assert made["method"] == "bicubic" and "seed" not in made
