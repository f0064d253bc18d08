"""The CVDM network: a schedule and a denoiser, built from a frozen config."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from .denoiser import Denoiser, UNetConfig
from .schedule import CosineSchedule, LearnedSchedule, ScheduleConfig

__all__ = ["NetworkConfig", "CVDMNetwork", "build_network"]


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild a :class:`CVDMNetwork` (stored in model files).

    Parameters
    ----------
    target_channels
        Channels of the target ``y`` (1 for both bundled tasks).
    cond_channels
        Channels of the condition ``x`` on the output grid (:meth:`~napari_cvdm.tasks.Task.cond_channels`).
    schedule
        ``"learned"`` (CVDM) or ``"cosine"`` (the fixed-schedule ablation).
    denoiser
        Denoiser U-Net architecture.
    schedule_net
        Architecture of the learned schedule (ignored for ``"cosine"``).
    """

    target_channels: int = 1
    cond_channels: int = 1
    schedule: Literal["learned", "cosine"] = "learned"
    denoiser: UNetConfig = field(default_factory=UNetConfig)
    schedule_net: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self) -> None:
        if self.schedule not in ("learned", "cosine"):
            raise ValueError(f"schedule must be 'learned' or 'cosine', got {self.schedule!r}")
        if isinstance(self.denoiser, dict):
            object.__setattr__(self, "denoiser", UNetConfig(**self.denoiser))
        if isinstance(self.schedule_net, dict):
            object.__setattr__(self, "schedule_net", ScheduleConfig(**self.schedule_net))

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {
            "target_channels": self.target_channels,
            "cond_channels": self.cond_channels,
            "schedule": self.schedule,
            "denoiser": self.denoiser.to_dict(),
            "schedule_net": self.schedule_net.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


class CVDMNetwork(nn.Module):
    """Container of ``schedule`` and ``denoiser``; sampling and losses live in
    :mod:`~napari_cvdm.diffusion.sampler` and :mod:`~napari_cvdm.diffusion.loss`."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        if config.schedule == "learned":
            self.schedule: LearnedSchedule | CosineSchedule = LearnedSchedule(config.cond_channels, config.schedule_net)
        else:
            self.schedule = CosineSchedule()
        self.denoiser = Denoiser(config.target_channels, config.cond_channels, config.denoiser)

    @property
    def stride(self) -> int:
        """Image sides must be multiples of this (both U-Nets downsample)."""
        return math.lcm(self.schedule.stride, self.denoiser.config.stride)

    def forward(self, *args, **kwargs):  # pragma: no cover - a container, not a layer
        raise TypeError("CVDMNetwork is a container: use diffusion.loss and diffusion.sampler")


def build_network(config: NetworkConfig) -> CVDMNetwork:
    """Build a freshly initialised network from its config."""
    return CVDMNetwork(config)
