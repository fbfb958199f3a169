"""Built-in encoder families, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from pathlib import Path

import torch

from ..hookspecs import hookimpl
from . import taesd
from .autoencoder_kl import AutoencoderKLFamily
from .base import Encoder, ModelEntry


class TinyAutoencoderFamily:
    name = "taesd"

    def probe(self, path: Path) -> ModelEntry | None:
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

    def probe_id(self, model_id: str, allow_download: bool) -> ModelEntry | None:
        return None

    def load(
        self, entry: ModelEntry, device: torch.device, dtype: torch.dtype, with_decoder: bool
    ) -> Encoder:
        return taesd.load(entry, device, dtype, with_decoder)


@hookimpl
def fixative_encoder_families() -> list:
    return [TinyAutoencoderFamily(), AutoencoderKLFamily()]
