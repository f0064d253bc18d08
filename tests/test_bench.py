"""napari-cvdm bench: figures that add up."""

from conftest import untrained_model_file
from napari_cvdm.cli import main


def test_bench_prints_consistent_figures(tmp_path, capsys):
    path = untrained_model_file(tmp_path, "sr")
    assert main(["bench", "--model", str(path), "--size", "32", "--samples", "2", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 samples × 3 steps" in out and "output 64×64" in out
    for words in ("whole sampling run", "schedule λ(x), τ(t), once", "cost per sample·step", "GFLOP/s",
                  "measured fp32 matmul peak", "peak memory"):
        assert words in out, words


def test_bench_result_amortizes_the_schedule(tmp_path):
    import torch

    from napari_cvdm.bench import bench_network, model_condition
    from napari_cvdm.models import load_model

    model = load_model(untrained_model_file(tmp_path, "sr"))
    cond = model_condition(model, 32, torch.device("cpu"))
    r = bench_network(model.network.eval(), cond, samples=2, steps=4, repeats=2)
    assert r.sample_steps_per_s > 0 and r.peak_gflops > 0 and r.denoiser_gflop > 0
    assert abs(r.sample_total_s - r.per_sample_step_s * 8) < 1e-9
    assert r.amortization > 0.3  # a sample·step costs about one denoiser pass (noisy on a busy machine)
