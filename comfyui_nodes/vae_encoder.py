"""A ComfyUI VAE (the object on a VAE wire) as a Fixative encoder, without touching the shared VAE.

ComfyUI's ``VAE.first_stage_model`` is either a TAESD module (``taesd_encoder`` is a plain
``nn.Sequential`` in the reference TAESD layout, whose output already is the diffusion model's latent) or
an AutoencoderKL-like module (``encoder`` -> Gaussian moments -> optional ``quant_conv``). We work on a
private copy whose weights are ordinary tensors: the VAE was built under ``torch.inference_mode()``, and
inference tensors cannot take part in autograd; other nodes keep using the original untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fixative.models import Encoder
from fixative.models.autoencoder_kl import LATENT_SCALING
from fixative.models.taesd import describe_tiny

# The VAE object does not say which diffusion model it serves; the latent channel count does, nearly
# (4: SD1.x/SD2.x/SDXL, 16: SD3/FLUX.1). The scaling only sets the latents' units: strength is a ratio
# of distances, so it does not change what the optimiser does or what the report says.
_SCALING_BY_CHANNELS = {4: LATENT_SCALING["sd"], 16: LATENT_SCALING["flux"]}


def private_copy(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A frozen copy of ``module`` with ordinary (non-inference) weights, on ``device``/``dtype``."""
    with torch.inference_mode(False):
        twin = copy.deepcopy(module)
        for sub in twin.modules():
            for name, param in list(sub._parameters.items()):
                if param is not None:
                    sub._parameters[name] = nn.Parameter(param.detach().clone(), requires_grad=False)
            for name, buffer in list(sub._buffers.items()):
                if buffer is not None:
                    sub._buffers[name] = buffer.detach().clone()
        twin.to(device=device, dtype=dtype)
        twin.eval()
    return twin


def trainable(encoder: Encoder) -> Encoder:
    """``encoder`` itself, or a private copy when any of its weights is an inference tensor."""
    tensors = list(encoder.parameters()) + list(encoder.buffers())
    if not any(t.is_inference() for t in tensors):
        return encoder
    return private_copy(encoder, encoder.device, encoder.dtype)


class MomentsMean(nn.Module):
    """AutoencoderKL encode path, deterministic: the Gaussian mean, then the latent format's scaling."""

    def __init__(
        self,
        encoder: nn.Module,
        quant_conv: nn.Module | None,
        latent_channels: int,
        scaling: float,
        shift: float,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.quant_conv = quant_conv
        self.latent_channels = latent_channels
        self.scaling, self.shift = scaling, shift

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(images * 2 - 1)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        if moments.shape[1] == 2 * self.latent_channels:
            moments = moments[:, : self.latent_channels]
        return (moments - self.shift) * self.scaling


class MomentsDecode(nn.Module):
    """Scaled latents back to pixels 0..1 through the VAE's own decode (for "what the model sees")."""

    def __init__(self, first_stage_model: nn.Module, scaling: float, shift: float) -> None:
        super().__init__()
        self.model = first_stage_model
        self.scaling, self.shift = scaling, shift

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return (self.model.decode(latents / self.scaling + self.shift) + 1) / 2


class GenericEncode(nn.Module):
    """Any other first stage: its own ``encode`` on ComfyUI's processed input (e.g. -1..1)."""

    def __init__(self, first_stage_model: nn.Module, process_input) -> None:
        super().__init__()
        self.model = first_stage_model
        self.process_input = process_input

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model.encode(self.process_input(images))
        if isinstance(out, (tuple, list)):
            out = out[0]
        if hasattr(out, "latent_dist"):
            out = out.latent_dist.mode()
        return out


def encoder_from_vae(
    vae, device: torch.device, dtype: torch.dtype, with_decoder: bool = True, name: str = "ComfyUI VAE"
) -> Encoder:
    """Wrap the encoder of ComfyUI's ``vae`` (TAESD or AutoencoderKL kind) as a Fixative ``Encoder``."""
    stage = getattr(vae, "first_stage_model", None)
    if stage is None:
        raise TypeError("the VAE input is not a ComfyUI VAE (it has no first_stage_model)")
    downscale = getattr(vae, "downscale_ratio", 8)
    downscale = downscale if isinstance(downscale, int) else 8
    if isinstance(getattr(stage, "taesd_encoder", None), nn.Module):
        encode = private_copy(stage.taesd_encoder, device, dtype)
        keys = {k: tuple(v.shape) for k, v in encode.state_dict().items()}
        info = describe_tiny(keys, name) or {}
        channels = int(info.get("latent_channels") or getattr(vae, "latent_channels", 4))
        decode = None
        if with_decoder and isinstance(getattr(stage, "taesd_decoder", None), nn.Module):
            decode = private_copy(stage.taesd_decoder, device, dtype)
        family = f"comfyui-{info.get('family', 'taesd')}"
        return Encoder(name, family, channels, downscale, encode, decode, source="comfyui:vae")
    channels = int(getattr(vae, "latent_channels", 4))
    if isinstance(getattr(stage, "encoder", None), nn.Module):
        scaling, shift = _SCALING_BY_CHANNELS.get(channels, (1.0, 0.0))
        if with_decoder and hasattr(stage, "decode"):
            twin = private_copy(stage, device, dtype)
            enc, quant = twin.encoder, getattr(twin, "quant_conv", None)
            decode = MomentsDecode(twin, scaling, shift)
        else:  # copy only what encoding needs
            enc, decode = private_copy(stage.encoder, device, dtype), None
            quant = getattr(stage, "quant_conv", None)
            quant = private_copy(quant, device, dtype) if isinstance(quant, nn.Module) else None
        encode = MomentsMean(enc, quant, channels, scaling, shift)
        family = f"comfyui-kl-{channels}ch"
        return Encoder(name, family, channels, downscale, encode, decode, source="comfyui:vae")
    twin = private_copy(stage, device, dtype)
    process = getattr(vae, "process_input", lambda image: image * 2.0 - 1.0)
    return Encoder(
        name,
        f"comfyui-{type(stage).__name__}",
        channels,
        downscale,
        GenericEncode(twin, process),
        None,
        source="comfyui:vae",
    )
