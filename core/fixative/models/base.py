"""What every encoder looks like to the rest of Fixative, whatever family it comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import FixativeError


@dataclass
class ModelEntry:
    """A model found on disk (or named by hub id) before it is loaded."""

    family: str  # e.g. "taef2", "taesd", "sd", "sdxl", "sd3", "flux"
    latent_channels: int
    source: str  # file path, folder or hub id
    kind: str  # "tiny" (TAESD layout) or "kl" (AutoencoderKL)
    decoder: str | None = None  # companion decoder file, when there is one
    details: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.source).name if Path(self.source).exists() else self.source

    def as_dict(self) -> dict:
        return {
            "family": self.family,
            "latent_channels": self.latent_channels,
            "source": self.source,
            "kind": self.kind,
            "decoder": self.decoder,
        }


class Encoder(nn.Module):
    """Maps images (B, 3, H, W, values 0..1) to the latent space a diffusion model trains on.

    ``forward`` returns latents already normalised the way the diffusion model sees them (scaling and
    shift factors applied), so distances are comparable between families.
    """

    def __init__(
        self,
        name: str,
        family: str,
        latent_channels: int,
        downscale: int,
        encode: nn.Module,
        decode: nn.Module | None = None,
        source: str = "",
        tile: int = 512,
    ) -> None:
        super().__init__()
        self.name = name
        self.family = family
        self.latent_channels = latent_channels
        self.downscale = downscale
        self.source = source
        self.tile = tile  # largest tile whose forward+backward stays within a few GB on a CPU
        self.encoder = encode
        self.decoder = decode
        self.requires_grad_(False)
        self.eval()

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images.to(self.dtype)).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images 0..1 ("what the model sees")."""
        if self.decoder is None:
            raise FixativeError(f"{self.name} has no decoder")
        return self.decoder(latents.to(self.dtype)).float().clamp(0, 1)

    def channels_last(self) -> bool:
        """Switch to channels-last weights where it pays, and say whether it did: TAESD-family encoders on
        a CPU (oneDNN's convolutions) and every encoder on CUDA (cuDNN's tensor-core convolutions want NHWC).

        Measured on this project's 2-core CPU, taef2 in bf16 at 512²: forward 0.63 s with the loaded
        layout, 0.42 s channels-last, the decoder 0.73 s against 0.53 s (a fresh ``check`` measured every
        figure the slow way); forward and backward at 256² 0.38 s instead of 0.47 s. The SD-sized
        AutoencoderKL (GroupNorm, attention) gained nothing on the CPU, so it is left alone there. On CUDA
        not yet measured (no GPU lent to this project): ``python -m bench.run --device cuda --quick``.
        """
        device = self.device.type
        if not (device == "cuda" or (device == "cpu" and str(self.family).startswith("tae"))):
            return False
        self.to(memory_format=torch.channels_last)
        return True

    def describe(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "latent_channels": self.latent_channels,
            "downscale": self.downscale,
            "source": self.source,
            "decoder": self.has_decoder,
        }


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' picks the fastest device present; an explicit device must exist."""
    name = str(device or "cpu")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise FixativeError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FixativeError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FixativeError("device 'mps' was asked for but is not available; use --device cpu")
    return dev


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def precision_name(dtype: torch.dtype) -> str:
    """``fp32``/``fp16``/``bf16``, as options and reports spell a precision."""
    return next((name for name, value in DTYPES.items() if value == dtype), str(dtype))


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX). Elsewhere bf16 is emulated and
    slower than fp32, so ``auto`` keeps fp32 there."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | None = None) -> torch.dtype:
    """``auto``: bf16 on a CPU with native bf16, where a protection takes half the time for the same
    figures to within 0.003 (docs/speed.md, "Precision"); fp32 everywhere else (not yet measured there)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        cpu = device is None or torch.device(device).type == "cpu"
        return torch.bfloat16 if cpu and native_bf16() else torch.float32
    try:
        return DTYPES[dtype or "fp32"]
    except KeyError:
        choices = ", ".join(["auto", *DTYPES])
        raise FixativeError(f"unknown precision {dtype!r}; use one of: {choices}") from None
