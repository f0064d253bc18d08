"""The CVDM core in pure torch: learned schedule, denoiser, loss and sampler."""

from .denoiser import Denoiser, UNet, UNetConfig, sr3_config
from .loss import LossTerms, cvdm_loss, ddpm_loss, training_loss
from .network import CVDMNetwork, NetworkConfig, build_network
from .sampler import SamplingCancelled, SamplingProgress, sample
from .schedule import CosineSchedule, LearnedSchedule, ScheduleConfig

__all__ = [
    "Denoiser",
    "UNet",
    "UNetConfig",
    "sr3_config",
    "LossTerms",
    "cvdm_loss",
    "ddpm_loss",
    "training_loss",
    "CVDMNetwork",
    "NetworkConfig",
    "build_network",
    "SamplingCancelled",
    "SamplingProgress",
    "sample",
    "CosineSchedule",
    "LearnedSchedule",
    "ScheduleConfig",
]
