"""The conditional U-Net denoiser and its presets."""

import pytest
import torch

from napari_cvdm.diffusion.denoiser import Denoiser, UNetConfig, count_parameters, sr3_config


def test_shapes_and_noise_level_input():
    torch.manual_seed(0)
    cfg = UNetConfig(
        in_channels=1,
        out_channels=1,
        base_channels=8,
        channel_mults=(1, 2, 2),
        num_res_blocks=2,
        attention_levels=(2,),
        embed_channels=8,
    )
    net = Denoiser(target_channels=1, cond_channels=2, config=cfg)
    with torch.no_grad():  # the output layer starts at zero: give it weights
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    z, x = torch.randn(2, 1, 32, 32), torch.randn(2, 2, 32, 32)
    out_low = net(z, x, torch.full((2, 1, 32, 32), 0.1))
    out_high = net(z, x, torch.full((2, 1, 32, 32), 0.9))
    assert out_low.shape == (2, 1, 32, 32)
    assert not torch.allclose(out_low, out_high)  # the γ map reaches the network
    ramp = torch.linspace(0.05, 0.95, 32).view(1, 1, 1, 32).expand(2, 1, 32, 32)
    assert torch.isfinite(net(z, x, ramp)).all()


def test_sizes_that_do_not_divide_the_stride_get_a_clear_error():
    net = Denoiser(1, 1, UNetConfig())
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.randn(1, 1, 30, 32), torch.randn(1, 1, 30, 32), torch.full((1, 1, 30, 32), 0.5))


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError):
        UNetConfig(in_channels=1, out_channels=1, attention_levels=(5,))
    with pytest.raises(ValueError):
        UNetConfig(in_channels=1, out_channels=1, channel_mults=())


def test_sr3_preset_has_the_papers_size():
    cfg = sr3_config()
    assert cfg.base_channels == 64
    assert cfg.channel_mults == (1, 2, 4, 8, 8)
    assert cfg.num_res_blocks == 3
    assert cfg.attention_levels == (4,)  # coarsest level: 8×8 for a 128×128 patch
    net = Denoiser(1, 1, cfg)
    n = count_parameters(net)
    assert 90e6 < n < 160e6  # SR3 / the reference BioSR configuration: ~100-124 M
    assert cfg.stride == 16


def test_config_round_trips_through_dict():
    cfg = UNetConfig(base_channels=16, attention_levels=(1,))
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
