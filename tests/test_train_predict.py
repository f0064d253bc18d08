"""Trainer (resume, stop, DDP), model files and the prediction path."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import TINY_SCHEDULE, TINY_UNET
from napari_cvdm.cli import main
from napari_cvdm.data.dataset import ArrayPairs, PairError, SimulatedPairs
from napari_cvdm.data.normalize import default_normalization
from napari_cvdm.diffusion.network import NetworkConfig
from napari_cvdm.models import ModelFileError, load_model, save_model
from napari_cvdm.train import Trainer, TrainConfig, new_network


def _config(task):
    return NetworkConfig(target_channels=1, cond_channels=1 if task == "sr" else 3, denoiser=TINY_UNET,
                         schedule_net=TINY_SCHEDULE)


def _trainer(task="sr", steps=6, tmp_path=None, **kw):
    pairs = SimulatedPairs(task=task, n=6, size=32, seed=1)
    cfg = TrainConfig(steps=steps, batch_size=2, patch_size=16, checkpoint_every=3, validate_every=0, seed=3, **kw)
    ckpt = tmp_path / "run.ckpt.safetensors" if tmp_path else None
    return Trainer(task, new_network(_config(task), 0), pairs, default_normalization(task), cfg,
                   checkpoint=ckpt, log=tmp_path / "log.jsonl" if tmp_path else None)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    out = {}
    for task in ("sr", "qpi"):
        trainer = _trainer(task, steps=3)
        result = trainer.run()
        out[task] = save_model(d / f"{task}.safetensors", result.network, task, default_normalization(task),
                               {"note": "test"}, {"steps": 3}, default_steps=4)
    return out


def test_resumed_run_matches_the_uninterrupted_one_step_for_step(tmp_path):
    whole = _trainer(steps=6)
    whole.run()
    first = _trainer(steps=6, tmp_path=tmp_path)
    first.run(callback=lambda p: p.step < 3)  # stop after step 3 (writes a checkpoint)
    assert first.step == 3
    resumed = _trainer(steps=6, tmp_path=tmp_path)
    resumed.load_checkpoint(tmp_path / "run.ckpt.safetensors")
    assert resumed.step == 3
    resumed.run()
    for (name, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    for a, b in zip(whole.ema.state_dict().values(), resumed.ema.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines and all("total" in x for x in lines if "val_psnr" not in x)


def test_validation_keeps_the_best_weights(tmp_path):
    trainer = _trainer(steps=4, tmp_path=tmp_path, validation_samples=2, validation_steps=2)
    trainer.validation = [trainer.pairs[0]]
    trainer.cfg = TrainConfig(steps=4, batch_size=2, patch_size=16, validate_every=2, validation_samples=2,
                              validation_steps=2)
    seen = []
    result = trainer.run(callback=seen.append)
    assert [p.step for p in seen] == [1, 2, 3, 4]
    assert seen[-1].val_psnr is not None and result.best_val_psnr == max(p.val_psnr for p in seen if p.val_psnr)


def test_save_load_round_trip_gives_identical_predictions(tiny_models):
    model = load_model(tiny_models["sr"])
    img = np.random.default_rng(0).random((24, 40)).astype(np.float32) * 100
    a = model.predict(img, n_samples=2, steps=3, seed=5)
    b = load_model(tiny_models["sr"]).predict(img, n_samples=2, steps=3, seed=5)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    assert model.metadata["training"] == {"steps": 3}
    assert model.default_steps == 4


def test_sr_predict_shapes_dtypes_units_and_stacks(tiny_models):
    model = load_model(tiny_models["sr"])
    img = np.random.default_rng(0).random((20, 30)) * 50 + 10
    pred = model.predict(img, n_samples=3, steps=2, seed=1)
    assert pred.mean.shape == pred.std.shape == (40, 60)
    assert pred.mean.dtype == pred.std.dtype == np.float32
    assert pred.samples.shape == (3, 40, 60) and pred.schedule.shape == (40, 60)
    np.testing.assert_allclose(pred.mean, pred.samples.mean(0), rtol=1e-5, atol=1e-4)
    assert (pred.std >= 0).all()
    scaled = model.predict(img * 10, n_samples=3, steps=2, seed=1)  # output in the input's units
    np.testing.assert_allclose(scaled.mean, 10 * pred.mean, rtol=1e-4, atol=1e-3)
    stack = model.predict(np.stack([img, img[::-1], img * 2]), n_samples=2, steps=2)
    assert stack.mean.shape == (3, 40, 60) and stack.samples.shape == (2, 3, 40, 60)
    u16 = model.predict((img * 100).astype(np.uint16), n_samples=2, steps=2)
    assert np.isfinite(u16.mean).all()


def test_qpi_predict_gives_zero_mean_phase(tiny_models):
    model = load_model(tiny_models["qpi"])
    pair = 1 + 0.1 * np.random.default_rng(0).standard_normal((2, 32, 32))
    pred = model.predict(pair, n_samples=2, steps=2)
    assert pred.mean.shape == (32, 32) and pred.mean.dtype == np.float32
    assert abs(float(pred.mean.mean())) < 1e-5
    with pytest.raises(ValueError, match="qpi expects two planes"):
        model.predict(pair[0], n_samples=2, steps=2)


def test_progress_covers_all_planes_and_cancel_stops(tiny_models):
    from napari_cvdm.diffusion.sampler import SamplingCancelled

    model = load_model(tiny_models["sr"])
    seen = []
    model.predict(np.ones((2, 16, 16)) + np.eye(16), n_samples=2, steps=3, callback=seen.append)
    assert [p.done for p in seen] == list(range(1, 7)) and seen[-1].total == 6
    with pytest.raises(SamplingCancelled):
        model.predict(np.eye(16) + 1, n_samples=2, steps=50, callback=lambda p: p.done < 2)


def test_model_files_are_validated(tmp_path, tiny_models):
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
        load_model(tiny_models["sr"], task="qpi")
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(tiny_models["sr"]), framework="pt") as f:
        meta = json.loads(f.metadata()["napari_cvdm"])
    meta["format_version"] = 99
    future = tmp_path / "future.safetensors"
    save_file(load_file(str(tiny_models["sr"])), str(future), metadata={"napari_cvdm": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="version 99"):
        load_model(future)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_mismatched_pairs_are_rejected_before_training():
    with pytest.raises(PairError, match="twice the input"):
        ArrayPairs("sr", [np.zeros((32, 32))], [np.zeros((32, 32))])
    with pytest.raises(PairError, match="NaN"):
        ArrayPairs("sr", [np.full((32, 32), np.nan)], [np.zeros((64, 64))])
    with pytest.raises(PairError, match="at least"):
        ArrayPairs("sr", [np.zeros((8, 8))], [np.zeros((16, 16))])


def test_train_cli_from_changes_weights_and_keeps_lineage(tmp_path, tiny_models):
    sim = tmp_path / "pairs"
    assert main(["simulate", "--task", "sr", "--n", "3", "--size", "32", "--output-dir", str(sim)]) == 0
    out = tmp_path / "tuned.safetensors"
    assert main(["train", "--task", "sr", "--pairs", str(sim), "--from", str(tiny_models["sr"]), "--steps", "3",
                 "--batch-size", "2", "--patch-size", "16", "--validate-every", "0", "--output", str(out)]) == 0
    parent, child = load_model(tiny_models["sr"]), load_model(out)
    assert child.network.config == parent.network.config
    changed = [not torch.equal(a, b) for a, b in zip(parent.network.state_dict().values(),
                                                     child.network.state_dict().values())]
    assert any(changed)
    lineage = child.metadata["training"]["lineage"]
    assert lineage[-1]["path"] == str(tiny_models["sr"]) and lineage[-1]["training"] == {"steps": 3}
    assert child.metadata["training"]["from"] == str(tiny_models["sr"])
    assert (tmp_path / "tuned.ckpt.safetensors").exists() and (tmp_path / "tuned.log.jsonl").exists()


def test_ddp_with_two_gloo_processes_trains_and_its_checkpoint_loads(tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "napari_cvdm", "train", "--task", "sr", "--simulate", "4", "--size", "32", "--patch-size", "16",
           "--batch-size", "2", "--steps", "3", "--validate-every", "0", "--base-channels", "8",
           "--channel-mults", "1,2", "--device", "cpu", "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    model = load_model(out)
    assert model.metadata["training"]["world_size"] == 2
    trainer = Trainer("sr", new_network(model.network.config, 0), SimulatedPairs(task="sr", n=2, size=32),
                      model.normalization, TrainConfig(steps=5, patch_size=16))
    trainer.load_checkpoint(tmp_path / "ddp.ckpt.safetensors")
    assert trainer.step == 3


def test_demo_runs_a_model_and_writes_the_images(tmp_path, tiny_models, capsys):
    from napari_cvdm.data.tiff import read_tiff

    assert main(["demo", "--model", str(tiny_models["sr"]), "--size", "32", "--samples", "2", "--steps", "2",
                 "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "CVDM mean" in out and "Richardson-Lucy" in out
    mean = read_tiff(tmp_path / "widefield_mean.tif")
    assert mean.data.shape == (64, 64) and mean.pixel_size_um == pytest.approx((0.0313, 0.0313))
    assert read_tiff(tmp_path / "widefield.tif").data.shape == (32, 32)


def test_predict_cli_writes_good_files_and_lists_bad_ones(tmp_path, tiny_models, capsys):
    from napari_cvdm.data.tiff import read_tiff, write_tiff

    good = write_tiff(tmp_path / "cell.tif", np.random.default_rng(0).random((24, 24)).astype(np.float32),
                      pixel_size_um=0.0626)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    rc = main(["predict", str(good), str(bad), "--model", str(tiny_models["sr"]), "--samples", "2", "--steps", "2",
               "--output-dir", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "broken.tif" in err and "1 of 2" in err
    mean = read_tiff(tmp_path / "out" / "cell_mean.tif")
    assert mean.data.shape == (48, 48) and mean.data.dtype == np.float32
    assert mean.pixel_size_um == pytest.approx((0.0313, 0.0313))
    assert (tmp_path / "out" / "cell_std.tif").exists() and not (tmp_path / "out" / "broken_mean.tif").exists()


def test_sigterm_stops_training_with_a_complete_resumable_checkpoint(tmp_path):
    import signal
    import time

    out = tmp_path / "run.safetensors"
    log = tmp_path / "run.log.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "napari_cvdm", "train", "--task", "sr", "--simulate", "4", "--size", "32",
            "--patch-size", "16", "--batch-size", "2", "--validate-every", "0", "--base-channels", "8",
            "--channel-mults", "1,2", "--checkpoint-every", "100000", "--device", "cpu", "--output", str(out)]
    proc = subprocess.Popen(base + ["--steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "SIGTERM" in stderr and "--resume" in stderr
    assert not out.exists()  # an interrupted run leaves its checkpoint, not a model file
    checkpoint = tmp_path / "run.ckpt.safetensors"
    trainer = Trainer("sr", new_network(_config_small(), 0), SimulatedPairs(task="sr", n=2, size=32),
                      default_normalization("sr"), TrainConfig(steps=5, patch_size=16))
    trainer.load_checkpoint(checkpoint)
    stopped_at = trainer.step
    assert stopped_at >= 10
    done = subprocess.run(base + ["--steps", str(stopped_at + 2), "--resume"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {checkpoint} at step {stopped_at}" in done.stdout
    assert load_model(out).metadata["training"]["steps"] == stopped_at + 2


def _config_small():
    from napari_cvdm.train import default_network_config

    return default_network_config("sr", base_channels=8, channel_mults=(1, 2))


def test_a_failed_write_never_destroys_the_previous_checkpoint_or_model(tmp_path, monkeypatch):
    import errno

    import safetensors.torch

    trainer = _trainer(steps=3, tmp_path=tmp_path)
    trainer.run()
    checkpoint = tmp_path / "run.ckpt.safetensors"
    before = checkpoint.read_bytes()
    model_path = save_model(tmp_path / "m.safetensors", trainer.ema, "sr", default_normalization("sr"), {})
    model_before = model_path.read_bytes()

    real_save = safetensors.torch.save_file

    def disk_full(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)  # write most of it, then fail like a full disk
        with open(filename, "r+b") as fh:
            fh.truncate(100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    trainer.step += 1
    with pytest.raises(OSError, match="No space"):
        trainer.save_checkpoint()
    with pytest.raises(OSError, match="No space"):
        save_model(model_path, trainer.ema, "sr", default_normalization("sr"), {})
    assert checkpoint.read_bytes() == before and model_path.read_bytes() == model_before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []  # no half-written leftovers
    monkeypatch.undo()
    fresh = _trainer(steps=5, tmp_path=tmp_path)
    fresh.load_checkpoint(checkpoint)
    assert fresh.step == 3
    load_model(model_path)
