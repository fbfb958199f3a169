"""Stand-in for ``comfy.taesd.taesd``: the TAESD module ComfyUI puts in ``VAE.first_stage_model``.

Same attribute names and maths as ComfyUI: ``taesd_encoder`` / ``taesd_decoder`` are ``nn.Sequential``
stacks in the reference TAESD layout (with the mid-block GroupNorm "pool" branch for taef2), and
``encode`` takes ComfyUI's -1..1 pixels and returns latents un-normalised by ``vae_scale``/``vae_shift``.
The sequential stacks come from Fixative's builder, which follows the same reference layout.
"""

from __future__ import annotations

import torch
from torch import nn

from fixative.models.taesd import build_decoder, build_encoder


class TAESD(nn.Module):
    latent_magnitude = 3
    latent_shift = 0.5

    def __init__(self, latent_channels: int = 4, use_midblock_gn: bool = False):
        super().__init__()
        self.taesd_encoder = build_encoder(latent_channels, pool=use_midblock_gn)
        self.taesd_decoder = build_decoder(latent_channels, pool=use_midblock_gn)
        self.vae_scale = nn.Parameter(torch.tensor(1.0))
        self.vae_shift = nn.Parameter(torch.tensor(0.0))

    def decode(self, x):
        x_sample = self.taesd_decoder((x - self.vae_shift) * self.vae_scale)
        return x_sample.sub(0.5).mul(2)

    def encode(self, x):
        return (self.taesd_encoder(x * 0.5 + 0.5) / self.vae_scale) + self.vae_shift
