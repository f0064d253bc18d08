"""The training loop: exact resume, best weights, failed writes, several processes, signals."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import make_trainer, run_torchrun
from napari_cvdm.inference.models import load_model, save_model
from napari_cvdm.tasks import get_task


def test_resumed_run_matches_the_uninterrupted_one_step_for_step(tmp_path):
    whole = make_trainer(steps=6)
    whole.run()
    first = make_trainer(steps=6, tmp_path=tmp_path)
    first.run(callback=lambda p: p.step < 3)  # stop after step 3 (writes a checkpoint)
    assert first.step == 3
    resumed = make_trainer(steps=6, tmp_path=tmp_path)
    resumed.load_checkpoint(tmp_path / "run.ckpt.safetensors")
    assert resumed.step == 3
    resumed.run()
    for (name, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    for a, b in zip(whole.ema.state_dict().values(), resumed.ema.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines and all("total" in x for x in lines if "val_psnr" not in x)


def test_a_run_resumed_with_more_steps_says_that_its_learning_rate_jumps_and_how_to_keep_the_decay(tmp_path):
    """Stretching a finished run's --steps stretches its cosine decay: the learning rate would jump back up from
    its floor. The resumed run says so, and with --lr-decay-steps at the old length it goes on from the floor."""
    from napari_cvdm.training.resume import resume_notes
    from napari_cvdm.training.train import lr_at

    make_trainer(steps=6, tmp_path=tmp_path, warmup_steps=1).run()
    longer = make_trainer(steps=12, tmp_path=tmp_path, warmup_steps=1)
    saved = longer.load_checkpoint(tmp_path / "run.ckpt.safetensors")
    (note,) = resume_notes(saved, longer.cfg, longer.step)
    assert f"goes on at {lr_at(7, longer.cfg):.2e}" in note and f"had come to {longer.cfg.lr * 0.1:.2e}" in note
    assert "(--steps 6 → 12); --lr-decay-steps 6 keeps the checkpoint's decay" in note
    kept = make_trainer(steps=12, tmp_path=tmp_path, warmup_steps=1, lr_decay_steps=6)
    assert resume_notes(kept.load_checkpoint(tmp_path / "run.ckpt.safetensors"), kept.cfg, 6) == []
    assert kept._train_step()["lr"] == pytest.approx(0.1 * kept.cfg.lr)
    same = make_trainer(steps=6, tmp_path=tmp_path, warmup_steps=1)
    assert resume_notes(same.load_checkpoint(tmp_path / "run.ckpt.safetensors"), same.cfg, 3) == []
    other = make_trainer(steps=6, tmp_path=tmp_path, warmup_steps=1, ema_decay=0.99)
    notes = resume_notes(other.load_checkpoint(tmp_path / "run.ckpt.safetensors"), other.cfg, 3)
    assert notes == ["a setting differs from the checkpoint's run: ema_decay 0.999 → 0.99"]
    done = resume_notes(saved, same.cfg, 6)
    assert done == [
        "the checkpoint is at step 6, at or past --steps 6: nothing is left to train; the model is "
        "written from the checkpoint"
    ]


def test_the_result_holds_the_weights_of_the_best_validation_not_the_last():
    scripted = iter([10.0, 30.0, 20.0])  # validations at steps 2, 4, 6: the second is the best
    snapshots = []

    def validator(network):
        snapshots.append({k: v.clone() for k, v in network.state_dict().items()})
        return next(scripted)

    seen = []
    trainer = make_trainer(steps=6, validator=validator, validate_every=2)
    result = trainer.run(callback=seen.append)
    assert [p.step for p in seen] == list(range(1, 7))
    assert [p.val_psnr for p in seen] == [None, 10.0, 10.0, 30.0, 30.0, 20.0]
    assert result.best_val_psnr == 30.0
    best, last = snapshots[1], snapshots[2]
    assert any(not torch.equal(best[k], last[k]) for k in best)  # the EMA moved after the best validation
    for k, v in result.network.state_dict().items():
        torch.testing.assert_close(v, best[k], rtol=0, atol=0, msg=k)


def test_a_checkpoint_of_another_task_is_refused(tmp_path):
    make_trainer(steps=3, tmp_path=tmp_path).run()
    other = make_trainer(steps=3)
    other.identity = {"task": "qpi"}
    with pytest.raises(ValueError, match="another task"):
        other.load_checkpoint(tmp_path / "run.ckpt.safetensors")


def test_a_failed_write_never_destroys_the_previous_checkpoint_or_model(tmp_path, monkeypatch):
    import errno

    import safetensors.torch

    sr = get_task("sr")
    trainer = make_trainer(steps=3, tmp_path=tmp_path)
    trainer.run()
    checkpoint = tmp_path / "run.ckpt.safetensors"
    before = checkpoint.read_bytes()
    args = (trainer.ema, sr, sr.default_normalization(), sr.default_optics())
    model_path = save_model(tmp_path / "m.safetensors", *args)
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
        save_model(model_path, *args)
    assert checkpoint.read_bytes() == before and model_path.read_bytes() == model_before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []  # no half-written leftovers
    monkeypatch.undo()
    fresh = make_trainer(steps=5, tmp_path=tmp_path)
    fresh.load_checkpoint(checkpoint)
    assert fresh.step == 3
    load_model(model_path)


def _small_trainer(config):
    """A trainer whose network has ``config`` (to read the checkpoints of the command-line runs below)."""
    from napari_cvdm.training.train import TrainConfig, Trainer, new_network

    return Trainer(
        new_network(config, 0), lambda rng: None, TrainConfig(steps=5, patch_size=16), identity={"task": "sr"}
    )


_SMALL = [
    "--base-channels",
    "8",
    "--channel-mults",
    "1,2",
    "--device",
    "cpu",
    "--validate-every",
    "0",
    "--size",
    "32",
    "--patch-size",
    "16",
    "--batch-size",
    "2",
    "--task",
    "sr",
    "--simulate",
    "4",
]


def test_ddp_with_two_gloo_processes_trains_and_its_checkpoint_loads(tmp_path):
    out = tmp_path / "ddp.safetensors"
    proc = run_torchrun(["train", *_SMALL, "--steps", "3", "--output", str(out)], 29517)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    model = load_model(out)
    assert model.metadata["training"]["world_size"] == 2
    trainer = _small_trainer(model.network.config)
    trainer.load_checkpoint(tmp_path / "ddp.ckpt.safetensors")
    assert trainer.step == 3


def test_sigterm_stops_training_with_a_complete_resumable_checkpoint(tmp_path):
    import signal
    import time

    out = tmp_path / "run.safetensors"
    log = tmp_path / "run.log.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "napari_cvdm", "train", *_SMALL, "--checkpoint-every", "100000", "--warmup", "1"]
    base += ["--output", str(out)]
    proc = subprocess.Popen(
        base + ["--steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "SIGTERM" in stderr and "--resume" in stderr
    assert not out.exists()  # an interrupted run leaves its checkpoint, not a model file
    checkpoint = tmp_path / "run.ckpt.safetensors"
    from napari_cvdm.training.job import NetworkOptions, network_config

    sr = get_task("sr")
    trainer = _small_trainer(
        network_config(sr, sr.default_normalization(), NetworkOptions(base_channels=8, channel_mults=(1, 2)))
    )
    trainer.load_checkpoint(checkpoint)
    stopped_at = trainer.step
    assert stopped_at >= 10
    done = subprocess.run(
        base + ["--steps", str(stopped_at + 2), "--resume"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed at step {stopped_at}" in done.stdout
    assert "(--steps 100000 → " in done.stderr and "--lr-decay-steps 100000 keeps" in done.stderr
    assert load_model(out).metadata["training"]["steps"] == stopped_at + 2


def test_a_checkpoint_opened_as_a_model_says_what_it_is(tmp_path):
    from napari_cvdm.inference.models import ModelFileError

    trainer = make_trainer(steps=2, tmp_path=tmp_path)
    trainer.run(callback=lambda p: p.step < 1)  # stops after step 1: writes a checkpoint
    with pytest.raises(ModelFileError, match=r"a training checkpoint, not a model .*--resume.*run\.safetensors"):
        load_model(tmp_path / "run.ckpt.safetensors")


def test_fine_tuning_starts_at_the_learning_rate_the_docs_recommend():
    from napari_cvdm.training.train import FINE_TUNE_LR, TrainConfig, training_config

    assert training_config(True, {"steps": 10}).lr == FINE_TUNE_LR == 2e-4
    assert training_config(True, {"steps": 10, "lr": 5e-4}).lr == 5e-4
    assert training_config(False, {"steps": 10}).lr == TrainConfig(steps=10).lr == 1e-3
