"""Conditional U-Nets (SR3-like) used by CVDM.

Two networks are built from the same :class:`UNet`:

* the **denoiser** ``ε_θ(z_t, x, γ)`` (:class:`Denoiser`), which receives the
  per-pixel signal fraction ``γ(t, x)`` both as an input channel and, through a
  per-pixel embedding, as a FiLM modulation of every residual block;
* the small **schedule network** ``U_φ(x)`` that gives ``λ(x)``
  (see :mod:`napari_cvdm.diffusion.schedule`), an unmodulated U-Net.

Every tensor is ``(B, C, H, W)``; ``H`` and ``W`` must be multiples of
:attr:`UNetConfig.stride`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AttentionBlock, Film, ResBlock, group_count

__all__ = [
    "UNetConfig",
    "UNet",
    "Denoiser",
    "Film",
    "noise_features",
    "N_NOISE_FEATURES",
    "sr3_config",
    "count_parameters",
]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a U-Net. The defaults are the bundled models' denoiser (2.9 M parameters with its
    schedule network; ``sr`` adds ``space_to_depth=2``): the one place the default architecture is defined.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input and output tensors.
    base_channels
        Channels at the finest level.
    channel_mults
        Multiplier of ``base_channels`` at each level; one level per entry and a
        factor-2 downsampling between consecutive levels.
    num_res_blocks
        Residual blocks per level on the way down (one more on the way up).
    attention_levels
        Level indices (0 = finest) that get self-attention after each residual
        block. The middle block always has attention when this is non-empty.
    num_heads
        Attention heads.
    dropout
        Dropout inside residual blocks.
    embed_channels
        Channels of the per-pixel noise-level embedding that modulates every
        residual block (FiLM); 0 builds an unmodulated U-Net.
    space_to_depth
        Pixel-unshuffle factor at the entry (and pixel-shuffle at the exit): the
        U-Net runs on a grid this many times coarser with ``factor²`` times the
        channels. 2 for ``sr`` runs the network at the input's own sampling.
    """

    in_channels: int = 1
    out_channels: int = 1
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = ()
    num_heads: int = 4
    dropout: float = 0.0
    embed_channels: int = 16
    space_to_depth: int = 1

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError("a U-Net needs at least one input and one output channel")
        if self.base_channels < 4:
            raise ValueError(f"base_channels must be >= 4, got {self.base_channels}")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError(f"channel_mults must be positive integers, got {self.channel_mults}")
        if self.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        bad = [lvl for lvl in self.attention_levels if not 0 <= lvl < len(self.channel_mults)]
        if bad:
            raise ValueError(f"attention_levels {bad} outside 0..{len(self.channel_mults) - 1}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.embed_channels < 0:
            raise ValueError(f"embed_channels must be >= 0, got {self.embed_channels}")
        if self.space_to_depth < 1:
            raise ValueError(f"space_to_depth must be >= 1, got {self.space_to_depth}")
        # tuples may arrive as lists from JSON metadata
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))

    @property
    def stride(self) -> int:
        """Total downsampling factor: image sides must be multiples of it."""
        return self.space_to_depth * 2 ** (len(self.channel_mults) - 1)

    def to_dict(self) -> dict:
        """JSON-serialisable form (for model-file metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return cls(**data)


class UNet(nn.Module):
    """U-Net with skip connections, optional attention and per-pixel FiLM.

    ``forward(h, emb)``: ``h`` is ``(B, in_channels, H, W)``; ``emb`` is
    ``(B, embed_channels, H, W)`` or ``None`` for an unmodulated net; ``films`` (from :meth:`film_maps`) may
    replace ``emb``. Returns ``(B, out_channels, H, W)``.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c0, e = config.base_channels, config.embed_channels
        attn = set(config.attention_levels)
        f2 = config.space_to_depth**2
        self.conv_in = nn.Conv2d(config.in_channels * f2, c0, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [c0]
        ch = c0
        n_levels = len(config.channel_mults)
        for level, mult in enumerate(config.channel_mults):
            for _ in range(config.num_res_blocks):
                block = nn.ModuleList([ResBlock(ch, c0 * mult, e, config.dropout)])
                ch = c0 * mult
                if level in attn:
                    block.append(AttentionBlock(ch, config.num_heads))
                self.down.append(block)
                skip_channels.append(ch)
            if level < n_levels - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skip_channels.append(ch)
        self.mid1 = ResBlock(ch, ch, e, config.dropout)
        self.mid_attn = AttentionBlock(ch, config.num_heads) if attn else nn.Identity()
        self.mid2 = ResBlock(ch, ch, e, config.dropout)
        self.up = nn.ModuleList()
        for level in reversed(range(n_levels)):
            mult = config.channel_mults[level]
            for _ in range(config.num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(ch + skip_channels.pop(), c0 * mult, e, config.dropout)])
                ch = c0 * mult
                if level in attn:
                    block.append(AttentionBlock(ch, config.num_heads))
                self.up.append(block)
            if level > 0:
                self.up.append(
                    nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)])
                )
        self.norm_out = nn.GroupNorm(group_count(ch), ch)
        self.conv_out = nn.Conv2d(ch, config.out_channels * f2, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def res_block_levels(self) -> list[tuple[ResBlock, int]]:
        """Every residual block with its level (0 = finest), in the order :meth:`forward` calls them."""
        out, level = [], 0
        for block in self.down:
            if isinstance(block[0], ResBlock):
                out.append((block[0], level))
            else:
                level += 1
        out += [(self.mid1, level), (self.mid2, level)]
        for block in self.up:
            if isinstance(block[0], ResBlock):
                out.append((block[0], level))
            else:
                level -= 1
        return out

    def film_maps(self, emb: torch.Tensor) -> list[Film]:
        """The modulation of every residual block (in call order) for a per-pixel embedding.

        Parameters
        ----------
        emb
            ``(B, embed_channels, H, W)`` on the image grid (before ``space_to_depth``); ``B`` may be 1 to
            modulate a whole batch alike.
        """
        f = self.config.space_to_depth
        embs = [F.avg_pool2d(emb, f) if f > 1 else emb]
        for _ in range(len(self.config.channel_mults) - 1):
            embs.append(F.avg_pool2d(embs[-1], 2))
        return [block.film_params(embs[level]) for block, level in self.res_block_levels()]

    def forward(
        self, h: torch.Tensor, emb: torch.Tensor | None = None, films: list[Film] | None = None
    ) -> torch.Tensor:
        stride = self.config.stride
        if h.shape[-1] % stride or h.shape[-2] % stride:
            raise ValueError(
                f"image sides {tuple(h.shape[-2:])} must be multiples of {stride} for this network; "
                "pad the image (the predict functions do this for you)"
            )
        if films is None and emb is not None and self.config.embed_channels:
            films = self.film_maps(emb)
        film = iter(films) if films is not None else None

        def res(block: ResBlock, x: torch.Tensor) -> torch.Tensor:
            return block(x, None if film is None else next(film))

        f = self.config.space_to_depth
        if f > 1:
            h = F.pixel_unshuffle(h, f)
        h = self.conv_in(h)
        skips = [h]
        for block in self.down:
            if isinstance(block[0], ResBlock):
                h = res(block[0], h)
                if len(block) > 1:
                    h = block[1](h)
            else:
                h = block[0](h)
            skips.append(h)
        h = res(self.mid2, self.mid_attn(res(self.mid1, h)))
        for block in self.up:
            if isinstance(block[0], ResBlock):
                h = res(block[0], torch.cat([h, skips.pop()], dim=1))
                if len(block) > 1:
                    h = block[1](h)
            else:
                h = block[1](block[0](h))
        out = self.conv_out(F.silu(self.norm_out(h), inplace=True))
        return F.pixel_shuffle(out, f) if f > 1 else out


N_NOISE_FEATURES = 14
_LOGSNR_LIMIT = 20.0


def noise_features(gamma: torch.Tensor) -> torch.Tensor:
    """Per-pixel features of the noise level.

    Parameters
    ----------
    gamma
        Signal fraction ``γ`` in (0, 1), shape ``(B, 1, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(B, N_NOISE_FEATURES, H, W)``: ``γ``, the scaled log signal-to-noise
        ratio ``log(γ / (1 − γ))`` and its Fourier features at six frequencies.
    """
    g = gamma.clamp(1e-7, 1 - 1e-7)
    logsnr = (torch.log(g) - torch.log1p(-g)).clamp(-_LOGSNR_LIMIT, _LOGSNR_LIMIT)
    freqs = torch.tensor([2.0**k / 8 for k in range(6)], device=gamma.device, dtype=gamma.dtype)
    angles = logsnr * freqs.view(1, -1, 1, 1)
    return torch.cat([g, logsnr / _LOGSNR_LIMIT, torch.sin(angles), torch.cos(angles)], dim=1)


class Denoiser(nn.Module):
    """Conditional noise predictor ``ε̂ = ε_θ(z_t, x, γ(t, x))``.

    Parameters
    ----------
    target_channels
        Channels of ``z_t`` (and of the predicted noise).
    cond_channels
        Channels of the condition ``x`` (already on the output grid).
    config
        U-Net architecture; its ``in_channels``/``out_channels`` are filled in.
    """

    def __init__(self, target_channels: int, cond_channels: int, config: UNetConfig | None = None) -> None:
        super().__init__()
        base = config or UNetConfig(in_channels=1, out_channels=1)
        if base.embed_channels < 1:
            raise ValueError("the denoiser needs embed_channels >= 1 to receive the noise level")
        cfg = UNetConfig(
            **{**base.to_dict(), "in_channels": target_channels + cond_channels + 1, "out_channels": target_channels}
        )
        self.config = cfg
        self.target_channels = target_channels
        self.cond_channels = cond_channels
        e = cfg.embed_channels
        self.embed = nn.Sequential(nn.Conv2d(N_NOISE_FEATURES, e, 1), nn.SiLU(), nn.Conv2d(e, e, 1))
        self.unet = UNet(cfg)

    def noise_embedding(self, gamma: torch.Tensor) -> list[Film]:
        """Everything the denoiser computes from the noise level alone: the FiLM maps of all residual blocks.

        A sampler computes them once per step and passes them to :meth:`forward` for every chunk of samples.

        Parameters
        ----------
        gamma
            Per-pixel signal fraction ``(B, 1, H, W)``; ``B = 1`` serves any batch.
        """
        return self.unet.film_maps(self.embed(noise_features(gamma)))

    def forward(
        self, z: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor, films: list[Film] | None = None
    ) -> torch.Tensor:
        """Predict the noise.

        Parameters
        ----------
        z
            Noisy target ``(B, target_channels, H, W)``.
        x
            Condition ``(B, cond_channels, H, W)``.
        gamma
            Per-pixel signal fraction ``(B, 1, H, W)``.
        films
            :meth:`noise_embedding` of ``gamma`` if already computed.

        Returns
        -------
        torch.Tensor
            Predicted noise ``ε̂``, shape of ``z``.
        """
        if films is None:
            films = self.noise_embedding(gamma)
        return self.unet(torch.cat([z, x, gamma], dim=1), films=films)


def sr3_config() -> UNetConfig:
    """The paper's SR3-sized denoiser: 64 channels, multipliers (1, 2, 4, 8, 8),
    3 residual blocks per level, attention at the coarsest level (8×8 for a
    128×128 patch, 16×16 for 256×256)."""
    return UNetConfig(
        in_channels=1,
        out_channels=1,
        base_channels=64,
        channel_mults=(1, 2, 4, 8, 8),
        num_res_blocks=3,
        attention_levels=(4,),
        num_heads=1,
        embed_channels=256,
    )


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
