"""Built-in encoder families, registered through the same hooks a third-party plugin implements."""

from __future__ import annotations

from pathlib import Path

import torch

from ..hookimpl import hookimpl
from . import taesd
from .autoencoder_kl import AutoencoderKLFamily
from .base import Encoder, ModelEntry


class TinyAutoencoderFamily:
    """The TAESD family: ``*_encoder.pth`` / ``.safetensors`` files and diffusers AutoencoderTiny folders."""

    name = "taesd"

    @hookimpl
    def fixative_probe_model(self, path: Path) -> ModelEntry | None:
        entry = None
        if path.is_file() and path.suffix in (".pth", ".pt", ".safetensors"):
            entry = taesd.probe(path)
        elif path.is_dir():  # diffusers AutoencoderTiny folder
            file = path / "diffusion_pytorch_model.safetensors"
            if file.is_file() and (path / "config.json").is_file():
                entry = taesd.probe(file)
        if entry is not None:
            entry.details["loader"] = self.name
        return entry

    @hookimpl
    def fixative_load_encoder(
        self, entry: ModelEntry, device: torch.device, dtype: torch.dtype, with_decoder: bool
    ) -> Encoder | None:
        if entry.details.get("loader") != self.name:
            return None
        return taesd.load(entry, device, dtype, with_decoder)


PLUGINS = (AutoencoderKLFamily(), TinyAutoencoderFamily())
