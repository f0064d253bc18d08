"""How a model scales its inputs and targets (recorded in model files).

The task objects (:mod:`napari_cvdm.tasks`) apply it: ``sr`` scales each input by its own robust
percentiles, ``qpi`` maps intensities and phase with fixed scales and may add a TIE channel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Normalization", "FLAT_EPS"]

FLAT_EPS = 1e-6


@dataclass(frozen=True)
class Normalization:
    """How a model's inputs and targets are scaled (recorded in model files).

    Attributes
    ----------
    task
        ``"sr"`` or ``"qpi"``.
    low_percentile, high_percentile
        ``sr``: percentiles of each input image mapped to 0 and 1.
    intensity_scale
        ``qpi``: ``s_I`` in ``(I − 1)/s_I``.
    phase_scale
        ``qpi``: ``s_φ`` (rad) in ``(φ − mean φ)/s_φ``.
    tie
        ``qpi``: ``(dz_um, wavelength_um, pixel_um, alpha)`` to add the TIE phase
        (divided by ``s_φ``) as a third condition channel, or ``None`` for the two
        intensities only.
    tie_residual
        ``qpi``: the network learns ``φ − TIE``.
    retrieval
        ``qpi``: the nonlinear phase retrieval that conditions the model (``dz_um``, ``wavelength_um``,
        ``pixel_um``, ``noise`` and the fields of :class:`~napari_cvdm.physics.retrieval.RetrievalOptions`);
        its phase and amplitude are added as condition channels and the network learns ``φ − φ_retrieval``.
    """

    task: str
    low_percentile: float = 1.0
    high_percentile: float = 99.8
    intensity_scale: float = 0.25
    phase_scale: float = 1.0
    tie: tuple[float, float, float, float] | None = None
    tie_residual: bool = False
    retrieval: dict | None = None

    def __post_init__(self) -> None:
        if self.tie is not None:
            object.__setattr__(self, "tie", tuple(float(v) for v in self.tie))
            if len(self.tie) != 4 or min(self.tie[:3]) <= 0 or self.tie[3] < 0:
                raise ValueError("tie must be (dz_um, wavelength_um, pixel_um, alpha) with positive values")
        if self.tie_residual and self.tie is None:
            raise ValueError("tie_residual needs the TIE channel (tie)")
        if self.retrieval is not None:
            missing = {"dz_um", "wavelength_um", "pixel_um", "noise"} - set(self.retrieval)
            if missing:
                raise ValueError(f"retrieval needs {', '.join(sorted(missing))}")
            if self.tie is not None:
                raise ValueError("a model is conditioned on the TIE or on the retrieval, not both")
        if not 0 <= self.low_percentile < self.high_percentile <= 100:
            raise ValueError("need 0 <= low_percentile < high_percentile <= 100")
        if self.intensity_scale <= 0 or self.phase_scale <= 0:
            raise ValueError("scales must be positive")

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return asdict(self)
