"""Stand-in for ``comfy.sd.VAE``: the object ComfyUI passes along a VAE wire.

Mirrors the attributes nodes rely on (``first_stage_model``, ``process_input``/``process_output``,
``latent_channels``, ``downscale_ratio``, ``device``, ``vae_dtype``) and the ``encode``/``decode``
methods in ComfyUI layout (pixels [B, H, W, C] 0..1, cropped to the downscale ratio).
"""

from __future__ import annotations

import torch
from torch import nn

from . import model_management
from .taesd.taesd import TAESD


class AutoencoderKL(nn.Module):
    """ComfyUI's ``comfy.ldm.models.autoencoder.AutoencoderKL`` contract around a diffusers AutoencoderKL.

    Like ComfyUI's: ``encoder`` returns the Gaussian moments (2 x latent channels), ``quant_conv`` follows,
    ``encode`` returns raw (unscaled) latents, ``decode`` returns -1..1 pixels.
    """

    def __init__(self, diffusers_vae) -> None:
        super().__init__()
        self.encoder = diffusers_vae.encoder
        self.decoder = diffusers_vae.decoder
        self.quant_conv = diffusers_vae.quant_conv
        self.post_quant_conv = diffusers_vae.post_quant_conv

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(x)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        return moments[:, : moments.shape[1] // 2]  # the regulariser's mode

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


class VAE:
    def __init__(self, sd=None, device=None, dtype=None, first_stage_model=None, latent_channels=None):
        self.downscale_ratio = 8
        self.upscale_ratio = 8
        self.latent_channels = 4
        self.process_input = lambda image: image * 2.0 - 1.0
        self.process_output = lambda image: torch.clamp((image + 1.0) / 2.0, min=0.0, max=1.0)
        if first_stage_model is None:
            if "taesd_decoder.1.weight" not in sd:
                raise ValueError("the stand-in builds TAESD from a state dict; else pass first_stage_model")
            self.latent_channels = sd["taesd_decoder.1.weight"].shape[1]
            pool = any(".pool." in k for k in sd)
            first_stage_model = TAESD(latent_channels=self.latent_channels, use_midblock_gn=pool)
            first_stage_model.load_state_dict(sd, strict=False)
        elif latent_channels is not None:
            self.latent_channels = latent_channels
        self.first_stage_model = first_stage_model.eval()
        self.device = device or model_management.vae_device()
        self.vae_dtype = dtype or model_management.vae_dtype(self.device)
        self.first_stage_model.to(self.vae_dtype)
        self.output_device = model_management.intermediate_device()

    def vae_encode_crop_pixels(self, pixels):
        x = (pixels.shape[1] // self.downscale_ratio) * self.downscale_ratio
        y = (pixels.shape[2] // self.downscale_ratio) * self.downscale_ratio
        if pixels.shape[1] != x or pixels.shape[2] != y:
            x_offset = (pixels.shape[1] % self.downscale_ratio) // 2
            y_offset = (pixels.shape[2] % self.downscale_ratio) // 2
            pixels = pixels[:, x_offset : x + x_offset, y_offset : y + y_offset, :]
        return pixels

    def encode(self, pixel_samples):
        pixel_samples = self.vae_encode_crop_pixels(pixel_samples).movedim(-1, 1)
        self.first_stage_model.to(self.device)
        pixels_in = self.process_input(pixel_samples).to(self.vae_dtype).to(self.device)
        return self.first_stage_model.encode(pixels_in).to(self.output_device).float()

    def decode(self, samples_in):
        self.first_stage_model.to(self.device)
        out = self.first_stage_model.decode(samples_in.to(self.vae_dtype).to(self.device))
        return self.process_output(out.to(self.output_device).float()).movedim(1, -1)
