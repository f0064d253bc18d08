"""Tiled sampling: tiles cover the image, blending is exact for pointwise maps, samples have no seams."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TINY_SCHEDULE, TINY_UNET, tiny_network, untrained_model_file
from napari_cvdm.diffusion.network import NetworkConfig, build_network
from napari_cvdm.diffusion.sampler import sample, schedule_map
from napari_cvdm.diffusion.tiling import (
    MAX_OVERLAP_STRIDES,
    balanced_tile,
    blend_window,
    default_overlap,
    tile_starts,
    tiled,
    tiled_area,
)
from napari_cvdm.inference.models import load_model
from napari_cvdm.inference.planning import plan_sampling


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(8, 300),
    tile=st.integers(8, 128),
    overlap_frac=st.floats(0, 0.49),
    stride=st.sampled_from([1, 2, 4, 8]),
)
def test_tiles_cover_the_image_on_the_stride_grid(size, tile, overlap_frac, stride):
    size, tile = size // stride * stride or stride, tile // stride * stride or stride
    overlap = int(overlap_frac * tile)
    starts = tile_starts(size, min(tile, size), overlap, stride)
    covered = np.zeros(size, bool)
    for s in starts:
        assert s % stride == 0 and 0 <= s <= size - min(tile, size)
        covered[s : s + min(tile, size)] = True
    assert covered.all()
    assert starts == sorted(set(starts))


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(16, 90),
    w=st.integers(16, 90),
    tile=st.integers(16, 40),
    overlap=st.integers(0, 7),
    channels=st.integers(1, 3),
)
def test_blending_a_pointwise_map_is_exact(h, w, tile, overlap, channels):
    def pointwise(a, b):  # any per-pixel function gives the same result tiled or not
        return torch.tanh(a) * b[:, :1] + a**2

    gen = torch.Generator().manual_seed(h * 1000 + w)
    a = torch.randn((2, channels, h, w), generator=gen, dtype=torch.float64)
    b = torch.randn((2, 2, h, w), generator=gen, dtype=torch.float64)
    torch.testing.assert_close(tiled(pointwise, tile, overlap)(a, b), pointwise(a, b))


def test_window_is_flat_inside_and_ramps_only_towards_neighbours():
    w = blend_window(32, 8, at_start=True, at_end=False, device=torch.device("cpu"), dtype=torch.float32)
    assert torch.all(w[:24] == 1) and torch.all(w[24:] < 1) and torch.all(w > 0)
    assert torch.all(torch.diff(w[24:]) < 0)


def _seam_stats(image: np.ndarray, borders: list[int]) -> tuple[float, float]:
    """Mean |horizontal difference| across the given column borders, and everywhere else."""
    diff = np.abs(np.diff(image, axis=-1))
    at = np.zeros(diff.shape[-1], bool)
    for b in borders:
        at[b - 1] = True  # the step between columns b-1 and b
    return float(diff[..., at].mean()), float(diff[..., ~at].mean())


def _random_net():
    """The tiny network with its zero-initialised output layers randomised, so that it computes something."""
    torch.manual_seed(0)
    net = build_network(
        NetworkConfig(
            target_channels=1,
            cond_channels=1,
            denoiser=dataclasses.replace(TINY_UNET, attention_levels=()),
            schedule_net=TINY_SCHEDULE,
        )
    ).eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().sum():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return net


def _smooth(rng, shape=(1, 1, 64, 160)):
    from scipy.ndimage import gaussian_filter

    return torch.from_numpy(gaussian_filter(rng.standard_normal(shape), (0, 0, 4, 4)) * 4).float()


@pytest.mark.parametrize("overlap, seamless", [(16, True), (0, False)])
def test_blended_tiles_of_a_denoiser_have_no_seams(overlap, seamless):
    net = _random_net()
    rng = np.random.default_rng(0)
    z, x, gamma = _smooth(rng), _smooth(rng), torch.sigmoid(_smooth(rng))
    tile = 48
    with torch.no_grad():
        out = tiled(net.denoiser, tile, overlap, net.stride)(z, x, gamma).numpy()
    starts = tile_starts(160, tile, overlap, net.stride)
    # a seam would sit where a tile's output starts or stops being used
    borders = sorted(set(starts[1:]) | {s + tile for s in starts[:-1]})
    across, inside = _seam_stats(out, borders)
    if seamless:
        assert across <= 1.1 * inside, (across, inside)
    else:  # hard tiles (no overlap) do show seams: the measure can tell
        assert across > 1.1 * inside, (across, inside)


def test_tiled_sampling_is_finite_and_follows_the_whole_image():
    net = _random_net()
    x = _smooth(np.random.default_rng(1))
    whole = sample(net, x, 2, 6, torch.Generator().manual_seed(3))
    tiles = sample(net, x, 2, 6, torch.Generator().manual_seed(3), tile=48, overlap=16)
    assert torch.isfinite(tiles).all()
    # GroupNorm statistics differ per tile, so the samples are not identical, but they follow the same field
    corr = np.corrcoef(tiles.numpy().ravel(), whole.numpy().ravel())[0, 1]
    assert corr > 0.8, corr


def test_tiles_share_their_noise_embedding_across_chunks_and_give_the_same_samples(monkeypatch):
    from napari_cvdm.diffusion import sampler
    from napari_cvdm.diffusion.denoiser import Denoiser

    net, x = _random_net(), _smooth(np.random.default_rng(2))
    calls = []
    embed = Denoiser.noise_embedding
    monkeypatch.setattr(Denoiser, "noise_embedding", lambda self, g: calls.append(1) or embed(self, g))
    n_tiles = len(tile_starts(64, 48, 16, net.stride)) * len(tile_starts(160, 48, 16, net.stride))

    def run():
        calls.clear()
        out = sample(net, x, 4, 3, torch.Generator().manual_seed(3), chunk_size=1, tile=48, overlap=16)
        return out, len(calls)

    shared, n_shared = run()
    monkeypatch.setattr(sampler, "_all_samples_tiled", lambda *args: None)  # chunk by chunk, as before
    per_chunk, n_per_chunk = run()
    assert n_shared == 3 * n_tiles and n_per_chunk == 4 * 3 * n_tiles
    torch.testing.assert_close(shared, per_chunk, atol=1e-5, rtol=1e-5)


def test_plan_tiles_only_when_the_image_does_not_fit(tmp_path):
    model = load_model(untrained_model_file(tmp_path, "sr"))
    small = plan_sampling(model.network, model.task.gain, (128, 128), 8)
    assert small.tile is None and small.chunk == 8
    huge = plan_sampling(model.network, model.task.gain, (8192, 8192), 1)
    assert huge.tile is not None and huge.tile % model.network.stride == 0 and huge.chunk == 1
    asked = plan_sampling(model.network, model.task.gain, (512, 512), 4, tile_size=64)
    assert asked.tile == 128  # sr: 64 input pixels are 128 output pixels
    with pytest.raises(ValueError, match="too small"):
        plan_sampling(model.network, model.task.gain, (512, 512), 4, tile_size=4)


def test_balanced_tiles_compute_less_than_the_largest_that_fits():
    # 8192² output pixels, the largest tile the CPU budget allows for the bundled sr (1488, stride 16), 256-pixel
    # overlaps: the last of 7 tiles per side overlaps its neighbour by 944 pixels; tiles of 1392 keep 7 per side
    largest, stride, overlap = 1488, 16, 256
    tile = balanced_tile((8192, 8192), largest, stride, overlap)
    assert tile == 1392
    assert tiled_area((8192, 8192), tile, stride, overlap) == (7 * 1392) ** 2
    assert tiled_area((8192, 8192), largest, stride, overlap) == (7 * 1488) ** 2
    # with the default overlap too: never more computed than with the largest tile, never a larger tile
    default = balanced_tile((8192, 8192), largest, stride)
    assert default <= largest and tiled_area((8192, 8192), default, stride) <= tiled_area((8192, 8192), largest, stride)
    # on the stride grid, and the largest when it already divides the image evenly
    assert balanced_tile((4096, 1000), 512, 16) % 16 == 0 and balanced_tile((4096, 1000), 512, 16) <= 512
    assert balanced_tile((2 * 512 - 128, 512), 512, 16) == 512
    with pytest.raises(ValueError, match="stride"):
        balanced_tile((512, 512), 100, 16)


def test_predict_with_tiles_is_finite_and_close_to_whole_image(tmp_path):
    model = load_model(untrained_model_file(tmp_path, "sr"))
    image = np.random.default_rng(0).random((40, 72)).astype(np.float32) * 100
    whole = model.predict(image, n_samples=2, steps=3, seed=1)
    tiled_pred = model.predict(image, n_samples=2, steps=3, seed=1, tile_size=24)
    assert tiled_pred.mean.shape == whole.mean.shape == (80, 144)
    assert np.isfinite(tiled_pred.mean).all() and np.isfinite(tiled_pred.schedule).all()
    assert np.mean(np.abs(tiled_pred.mean - whole.mean)) < 0.5 * np.mean(np.abs(whole.mean - whole.mean.mean()))


def test_bf16_autocast_sampling_path_runs_on_cpu_and_follows_fp32():
    from napari_cvdm.inference.devices import autocast_dtype, cpu_has_native_bf16, sampling_autocast

    assert autocast_dtype(torch.device("cuda")) == torch.bfloat16
    assert autocast_dtype(torch.device("mps")) is None
    assert autocast_dtype(torch.device("cpu")) == (torch.bfloat16 if cpu_has_native_bf16() else None)
    net = _random_net()
    x = _smooth(np.random.default_rng(2))
    fp32 = sample(net, x, 2, 4, torch.Generator().manual_seed(3))
    with sampling_autocast(torch.device("cpu"), torch.bfloat16):  # the CUDA path's code, exercised on CPU
        bf16 = sample(net, x, 2, 4, torch.Generator().manual_seed(3))
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert np.corrcoef(bf16.numpy().ravel(), fp32.numpy().ravel())[0, 1] > 0.95


def _assert_same_samples(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float rounding, which the sampler's 1/√γ amplifies at the noisiest steps of a random net."""
    rel = float((a - b).norm() / b.norm())
    assert rel < 1e-3, rel


def test_channels_last_and_compiled_denoisers_give_the_same_samples(tmp_path):
    from napari_cvdm.inference.devices import compile_network, prepare_network, sampling_memory_format
    from napari_cvdm.inference.models import save_model

    assert sampling_memory_format(torch.device("cuda")) == torch.channels_last
    assert sampling_memory_format(torch.device("mps")) == torch.contiguous_format
    net = _random_net()
    x = _smooth(np.random.default_rng(4))
    plain = sample(net, x, 3, 4, torch.Generator().manual_seed(3), chunk_size=2)
    prepare_network(net, torch.device("cpu"))
    assert net.denoiser.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not net.denoiser.unet.conv_in.weight.is_contiguous()
    channels_last = sample(net, x, 3, 4, torch.Generator().manual_seed(3), chunk_size=2)
    _assert_same_samples(channels_last, plain)
    # a model file written from a channels-last network loads and samples alike
    bundled = load_model("sr")
    path = save_model(tmp_path / "m.safetensors", net, "sr", bundled.normalization, bundled.optics, default_steps=4)
    reloaded = load_model(path).network
    _assert_same_samples(sample(reloaded, x, 3, 4, torch.Generator().manual_seed(3)), plain)
    # torch.compile traces our denoiser (both call forms, two batch sizes); "aot_eager" skips the slow code
    # generation of the default backend, which docs/performance.md measures
    compile_network(net, backend="aot_eager")
    compiled = sample(net, x, 3, 4, torch.Generator().manual_seed(3), chunk_size=2)
    _assert_same_samples(compiled, plain)


def test_cpu_chunks_stay_cache_sized_and_gpus_take_what_the_budget_allows(tmp_path):
    from napari_cvdm.inference.devices import preferred_chunk_pixels

    model = load_model(untrained_model_file(tmp_path, "sr"))
    cpu, gpu = preferred_chunk_pixels(torch.device("cpu")), preferred_chunk_pixels(torch.device("cuda"))
    assert gpu is None
    assert (
        plan_sampling(model.network, model.task.gain, (1024, 1024), 8, chunk_pixels=cpu).chunk == 1
    )  # never below one sample
    assert plan_sampling(model.network, model.task.gain, (256, 256), 8, chunk_pixels=cpu).chunk == cpu // 256**2
    assert plan_sampling(model.network, model.task.gain, (256, 256), 8, chunk_pixels=gpu).chunk == 8


def test_a_cuda_gpu_gets_half_its_free_memory_as_budget(monkeypatch):
    from napari_cvdm.inference.devices import memory_budget_bytes

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 * 2**30, 141 * 2**30))
    assert memory_budget_bytes(torch.device("cuda")) == 50 * 2**30
    assert memory_budget_bytes(torch.device("cpu")) == memory_budget_bytes(torch.device("mps")) == 2 * 2**30


def test_the_memory_plan_counts_the_film_maps_exactly_and_the_schedule_net(tmp_path):
    import torch

    from napari_cvdm.inference.planning import _bytes_per_pixel, _schedule_bytes_per_pixel, _shared_bytes_per_pixel

    model = load_model(untrained_model_file(tmp_path, "sr"))
    net = model.network
    side = 4 * net.stride
    with torch.inference_mode():
        films = net.denoiser.noise_embedding(torch.full((1, 1, side, side), 0.5))
    made = sum(t.numel() * t.element_size() for film in films for t in film)
    assert _shared_bytes_per_pixel(net) * side * side == pytest.approx(made)
    assert _schedule_bytes_per_pixel(net) > 0
    # the denoiser tiles when one sample's pass with its FiLM maps does not fit the budget, the λ U-Net (once per
    # image) when its own pass does not: each on its own, so neither computes overlaps for the other's memory
    denoiser, schedule = _bytes_per_pixel(net) + _shared_bytes_per_pixel(net), _schedule_bytes_per_pixel(net)
    for per_pixel, part in ((denoiser, "tile"), (schedule, "schedule_tile")):
        fits = int(1.01 * per_pixel * 64 * 64)
        assert getattr(plan_sampling(net, model.task.gain, (64, 64), 1, budget_bytes=fits), part) is None
        assert getattr(plan_sampling(net, model.task.gain, (64, 64), 1, budget_bytes=int(0.9 * fits)), part)
    between = plan_sampling(net, model.task.gain, (64, 64), 1, budget_bytes=int((denoiser + schedule) / 2 * 64**2))
    assert (between.tile is None, between.schedule_tile is None) == (denoiser < schedule, schedule < denoiser)
    assert plan_sampling(net, model.task.gain, (64, 64), 8, budget_bytes=int(1.01 * denoiser * 64 * 64)).chunk == 1
    asked = plan_sampling(net, model.task.gain, (64, 64), 1, tile_size=16)
    assert asked.tile == asked.schedule_tile == 32  # tiles asked for bound both networks


def test_predict_tiles_the_schedule_map_as_its_plan_says_and_the_denoiser_apart(tmp_path, monkeypatch):
    """A large image whose λ U-Net does not fit the memory budget but whose denoiser does: λ(x) is computed on
    tiles, the samples on the whole image (not on the λ U-Net's smaller tiles, whose overlaps cost work)."""
    import napari_cvdm.inference.predict as predict_module
    from napari_cvdm.inference.planning import SamplingPlan

    model = load_model(untrained_model_file(tmp_path, "sr"))
    seen = {"lam": [], "denoiser": []}
    lam, denoise = model.network.schedule.lam, model.network.denoiser.forward
    monkeypatch.setattr(model.network.schedule, "lam", lambda x: seen["lam"].append(x.shape[-1]) or lam(x))
    monkeypatch.setattr(
        model.network.denoiser,
        "forward",
        lambda z, *a, **k: seen["denoiser"].append(z.shape[-1]) or denoise(z, *a, **k),
    )
    plan = SamplingPlan(chunk=2, tile=None, schedule_tile=64)
    monkeypatch.setattr(predict_module, "device_sampling_plan", lambda *a, **k: plan)
    model.predict(np.random.default_rng(0).random((96, 96)).astype(np.float32), n_samples=2, steps=2, seed=1)
    assert seen["lam"] and max(seen["lam"]) <= 64 < 192  # tiles of the 192² output grid
    assert set(seen["denoiser"]) == {192}


def test_schedule_tiles_overlap_by_the_schedule_nets_reach_not_the_denoisers():
    net = tiny_network().eval()
    with torch.no_grad():  # an untrained λ U-Net is constant (zero last layer): give it a spatial response
        torch.nn.init.normal_(
            net.schedule.lambda_net.conv_out.weight, std=0.3, generator=torch.Generator().manual_seed(1)
        )
    x = torch.nn.functional.avg_pool2d(torch.randn((1, 1, 400, 400), generator=torch.Generator().manual_seed(0)), 5)
    x = torch.nn.functional.interpolate(x, size=(400, 400), mode="bilinear")
    reach = default_overlap(160, net.schedule.stride)
    assert reach == MAX_OVERLAP_STRIDES * net.schedule.stride < 160 // 4  # the λ U-Net's reach, below a quarter
    computed = []
    lam = net.schedule.lam
    net.schedule.lam = lambda t: computed.append(t.shape[-2] * t.shape[-1]) or lam(t)
    whole = schedule_map(net, x)
    computed.clear()
    own = schedule_map(net, x, tile=160)
    own_pixels = sum(computed)
    computed.clear()
    wide = schedule_map(net, x, tile=160, overlap=160 // 4)  # as wide as a deep denoiser's
    assert own_pixels < sum(computed)  # fewer and balanced tiles: less of the image computed twice
    assert own_pixels < 1.5 * 400**2

    def gap(tiled_lam):
        return float(((tiled_lam - whole).abs() / whole).mean())

    assert gap(own) < 1.5 * gap(wide) + 1e-3, (gap(own), gap(wide))


def test_several_gpus_are_listed_each_by_number(monkeypatch):
    from napari_cvdm.inference.devices import available_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert available_devices()[:3] == ["cuda", "cuda:0", "cuda:1"] and available_devices()[-1] == "cpu"
