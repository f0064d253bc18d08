"""napari-cvdm bench: figures that add up."""

import numpy as np
import pytest

from conftest import untrained_model_file
from napari_cvdm.cli import main


def test_bench_prints_consistent_figures(tmp_path, capsys):
    path = untrained_model_file(tmp_path, "sr")
    assert main(["bench", "--model", str(path), "--size", "32", "--samples", "2", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 samples × 3 steps" in out and "output 64×64" in out
    for words in (
        "whole sampling run",
        "schedule λ(x), τ(t), once",
        "cost per sample·step",
        "GFLOP/s",
        "matmul peak",
        "noise-level embedding",
        "peak memory",
    ):
        assert words in out, words


def test_bench_result_amortizes_the_schedule(tmp_path):
    import torch

    from napari_cvdm.inference.models import load_model
    from napari_cvdm.jobs.bench import bench_network, model_condition

    model = load_model(untrained_model_file(tmp_path, "sr"))
    cond = model_condition(model, 32, torch.device("cpu"))
    r = bench_network(model.network.eval(), cond, samples=2, steps=4, repeats=5)  # medians: timer jitter
    assert r.sample_steps_per_s > 0 and r.peak_gflops > 0 and r.denoiser_gflop > 0
    assert r.amortization > 0.3  # a sample·step costs about one denoiser pass (noisy on a busy machine)
    assert r.embedding_s > 0 and r.rest_of_pass_s > 0
    # the two parts are timed apart from the whole pass: together about one pass (timer noise on a busy machine)
    assert 0.5 < (r.embedding_s + r.rest_of_pass_s) / r.denoiser_pass_s < 2.0


def test_bench_counts_the_work_of_a_whole_denoiser_pass_per_sample(tmp_path):
    """Counted independently here: one sample costs one whole pass; more samples share the noise embedding."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_cvdm.inference.models import load_model
    from napari_cvdm.jobs.bench import bench_network, model_condition

    model = load_model(untrained_model_file(tmp_path, "sr"))
    net = model.network.eval()
    cond = model_condition(model, 32, torch.device("cpu"))
    z, gamma = torch.randn(1, 1, *cond.shape[-2:]), torch.full((1, 1, *cond.shape[-2:]), 0.3)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net.denoiser(z, cond, gamma)
    whole_pass = counter.get_total_flops() / 1e9
    one = bench_network(net, cond, samples=1, steps=1, repeats=1)
    four = bench_network(net, cond, samples=4, steps=1, repeats=1)
    assert one.denoiser_gflop == pytest.approx(whole_pass, rel=1e-6)
    assert four.denoiser_gflop < whole_pass


def test_the_schedule_network_runs_once_per_image_not_per_step(tmp_path, monkeypatch):
    from napari_cvdm.inference.models import load_model

    model = load_model(untrained_model_file(tmp_path, "sr"))
    calls = []
    lam = model.network.schedule.lam
    monkeypatch.setattr(model.network.schedule, "lam", lambda x: calls.append(1) or lam(x))
    model.predict(np.zeros((24, 24), np.float32) + np.arange(24), n_samples=3, steps=7)
    assert len(calls) == 1
    calls.clear()
    model.predict(np.zeros((2, 24, 40), np.float32) + np.arange(40), n_samples=2, steps=5, tile_size=16)
    from napari_cvdm.diffusion.tiling import tile_starts

    stride = model.network.stride  # output 48×80 in tiles of 32 with an overlap of 8: once per tile and plane
    tiles = len(tile_starts(48, 32, 8, stride)) * len(tile_starts(80, 32, 8, stride))
    assert len(calls) == 2 * tiles  # not multiplied by the 5 steps


def test_fp32_can_be_forced_and_bench_says_why(monkeypatch, tmp_path, capsys):
    import torch

    from napari_cvdm.inference.devices import FORCE_FP32_ENV, autocast_dtype

    assert autocast_dtype(torch.device("cuda")) == torch.bfloat16
    monkeypatch.setenv(FORCE_FP32_ENV, "1")
    assert autocast_dtype(torch.device("cuda")) is None and autocast_dtype(torch.device("cpu")) is None
    path = untrained_model_file(tmp_path, "sr")
    assert main(["bench", "--model", str(path), "--size", "32", "--samples", "2", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "fp32 forced by NAPARI_CVDM_FP32=1" in out and "CPU with" in out and "(fp32 denoiser)" in out
