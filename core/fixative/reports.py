"""What ``protect`` and ``check`` report, as typed records with ``to_dict()`` (the JSON hosts send).

The JSON keeps the keys earlier versions wrote and adds ``schema_version``. Reading a report like a dict
(``report["strength"]``) still works for one version; new code reads attributes.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2


def clean(value: Any) -> Any:
    """JSON has no infinity or NaN: they become null; dataclasses become dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


class Record:
    """``to_dict()`` for every report part, and dict-style reading kept for one version."""

    def to_dict(self) -> dict:
        return clean(self)

    def __getitem__(self, key: str) -> Any:
        warnings.warn(
            f"reading a report like a dict is deprecated; use .{key} or .to_dict()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)


@dataclass
class Visibility(Record):
    """How visible a change is: classical measures plus the budget model's own (``checks.visibility``)."""

    linf_255: float  # largest change of any channel, in 0..255 steps
    psnr_db: float
    ssim: float
    lpips: float | None = None  # only where LPIPS's AlexNet weights are on the machine
    ms_ssim: float | None = None
    jnd_exceed_share: float | None = (
        None  # share of pixels changed by more than one just-noticeable difference
    )
    flat_rms_255: float | None = None  # RMS change in the flattest 15 % of the image, in 0..255 steps


@dataclass
class EncoderStrength(Record):
    """One encoder's figures: strength toward the target, and the same for matched noise (the null)."""

    name: str
    family: str
    strength: float | None
    distance_before: float | None = None
    distance_after: float | None = None
    source: str | None = None
    noise_strength: float | None = None  # the same |change| per pixel with random signs
    vs_noise: float | None = None  # strength / noise strength
    decoded_share: float | None = None  # how far what the model sees moved toward the target's decode
    noise_decoded_share: float | None = None
    used_to_protect: bool = True
    feature_shift: float | None = None


@dataclass
class Purified(Record):
    """Strength left after one purification (``None`` and ``skipped`` when it could not run here)."""

    purification: str
    strength: float | None = None
    per_encoder: dict[str, float] = field(default_factory=dict)
    share_kept: float | None = None  # strength after / strength before
    survives: bool | None = None
    skipped: str | None = None
    # what the model sees after it: decoded share of the purified file against the purified original, through
    # the first encoder with a decoder (latent strength alone can sit in directions the decoder ignores)
    decoded_share: float | None = None
    # the null after the same purification: matched noise (the file's own |change| with random signs) put
    # through it and scored the same way (a purification such as IMPRESS moves any image a little itself)
    noise_strength: float | None = None
    noise_decoded_share: float | None = None


@dataclass
class ProtectReport(Record):
    """Everything measured about one protection (the protect JSON)."""

    version: str
    source: str | None
    size: list[int]
    mode: str
    method: str
    target: dict
    intensity: str
    quality: str
    budget: dict
    encoders: list[EncoderStrength]
    strength: float
    perceptual: Visibility
    steps: int
    stopped_early: bool
    optimise_seconds: float
    seconds: float
    device: str
    seed: int
    options: dict = field(default_factory=dict)
    precision: str = "fp32"  # what the encoders computed in (``--precision auto`` resolved on this machine)
    eot: dict = field(default_factory=dict)  # the purifications drawn while hardening, by kind
    start: str = "random"  # where the optimiser started: seeded noise, or a bank's universal perturbation
    transfer: list[EncoderStrength] = field(default_factory=list)  # other families found here, not optimised
    # a large image's protection in a copy served at half the size (``api.protect.SERVED_FROM``)
    served: Purified | None = None
    notes: list[str] = field(default_factory=list)
    definitions: dict = field(default_factory=dict)
    output: str | None = None
    schema_version: int = SCHEMA_VERSION


@dataclass
class CheckReport(Record):
    """What ``fixative check`` measured about a file, and its verdict."""

    fixative: str
    file: str | None
    original: str | None
    size: list[int]
    verdict: str
    verdict_reason: str
    exact: bool
    fast: bool
    strength: float | None
    thresholds: dict
    encoders: list[EncoderStrength]
    perceptual: Visibility | None
    robustness: list[Purified]
    transfer: list[EncoderStrength]
    target: dict
    metadata: dict | None
    model_sees: str | None
    notes: list[str]
    seconds: float
    precision: str = "fp32"  # what the encoders computed in (``auto`` resolved on this machine)
    not_measured: list[str] = field(default_factory=list)
    estimate: dict | None = None  # without the original: the estimate's spread and calibration
    definitions: dict = field(default_factory=dict)
    schema: int = SCHEMA_VERSION  # the key version 1 wrote
    schema_version: int = SCHEMA_VERSION
