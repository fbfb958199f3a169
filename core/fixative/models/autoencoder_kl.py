"""Full-size diffusers ``AutoencoderKL`` encoders: SD1.x/SD2.x/SDXL (4 channels), SD3/FLUX.1 (16).

Loaded with ``from_pretrained`` (diffusers folder or hub id) or from one ``.safetensors`` file (a VAE
alone or a whole SD checkpoint). Single files are converted offline: the config is read off the weight
shapes, so nothing is fetched from the hub to load a file the user already has.
"""

from __future__ import annotations

import json
import os
import re
from math import gcd
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelNotFoundError
from ..hookimpl import hookimpl
from .base import Encoder, ModelEntry
from .weights import read_keys, read_state_dict

# (scaling_factor, shift_factor) the diffusion models apply to the VAE latents.
LATENT_SCALING = {
    "sd": (0.18215, 0.0),
    "sdxl": (0.13025, 0.0),
    "sd3": (1.5305, 0.0609),
    "flux": (0.3611, 0.1159),
}
_LDM_PREFIXES = ("first_stage_model.", "vae.", "")


def _family_from(name: str, latent_channels: int) -> str:
    lower = name.lower()
    if latent_channels == 16:
        return "flux" if ("flux" in lower or lower.startswith("ae.")) else "sd3"
    return "sdxl" if "xl" in lower else "sd"


def _ldm_prefix(keys) -> str | None:
    for prefix in _LDM_PREFIXES:
        if f"{prefix}encoder.down.0.block.0.conv1.weight" in keys:
            return prefix
    return None


def _is_diffusers_keys(keys) -> bool:
    return "encoder.conv_in.weight" in keys and "encoder.down_blocks.0.resnets.0.conv1.weight" in keys


def config_from_diffusers_keys(keys: dict[str, tuple[int, ...]]) -> dict:
    """An AutoencoderKL config that fits a diffusers-layout state dict, read off its shapes."""
    n_down = 1 + max(int(m[1]) for k in keys if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k)))
    channels = [keys[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"][0] for i in range(n_down)]
    layers = 1 + max(
        int(m[1]) for k in keys if (m := re.match(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.", k))
    )
    groups = 32
    for c in channels:
        groups = gcd(groups, c)
    return {
        "in_channels": keys["encoder.conv_in.weight"][1],
        "out_channels": keys.get("decoder.conv_out.weight", (3,))[0],
        "down_block_types": ["DownEncoderBlock2D"] * n_down,
        "up_block_types": ["UpDecoderBlock2D"] * n_down,
        "block_out_channels": channels,
        "layers_per_block": layers,
        "latent_channels": keys["encoder.conv_out.weight"][0] // 2,
        "norm_num_groups": groups,
        "use_quant_conv": "quant_conv.weight" in keys,
        "use_post_quant_conv": "post_quant_conv.weight" in keys,
        "mid_block_add_attention": any(k.startswith("encoder.mid_block.attentions.") for k in keys),
    }


class KLEncode(nn.Module):
    def __init__(self, vae, scaling: float, shift: float) -> None:
        super().__init__()
        self.vae = vae
        self.scaling, self.shift = scaling, shift

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        moments = self.vae.encoder(images * 2 - 1)
        if self.vae.quant_conv is not None:
            moments = self.vae.quant_conv(moments)
        mean = moments[:, : moments.shape[1] // 2]
        return (mean - self.shift) * self.scaling


class KLDecode(nn.Module):
    def __init__(self, vae, scaling: float, shift: float) -> None:
        super().__init__()
        self.vae = vae
        self.scaling, self.shift = scaling, shift

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return (self.vae.decode(latents / self.scaling + self.shift).sample + 1) / 2


def wrap(vae, family: str, name: str, source: str, with_decoder: bool = True) -> Encoder:
    """Wrap a diffusers ``AutoencoderKL`` (already loaded) as a Fixative encoder."""
    cfg = vae.config
    scaling = float(cfg.scaling_factor)
    shift = float(cfg.shift_factor or 0.0) if getattr(cfg, "shift_factor", None) is not None else 0.0
    downscale = 2 ** (len(cfg.block_out_channels) - 1)
    decode = KLDecode(vae, scaling, shift) if with_decoder else None
    # Full VAEs keep 128-512 channels at high resolution: 288-px tiles kept a 4096² image's latent-only step
    # under 4 GB (3.5 GB measured) and still cover a 512² image with 2 x 2 tiles (256 px: 3 x 3, +40 % time).
    # With the decoder in the step (the view loss) the SD-sized 4096² scan peaks at 3.97 GB, its graphs held
    # one after the other above 2048² (optimise.loop.SPLIT_VIEW_PIXELS; docs/speed.md).
    return Encoder(
        name,
        family,
        int(cfg.latent_channels),
        downscale,
        KLEncode(vae, scaling, shift),
        decode,
        source,
        tile=288,
    )


class AutoencoderKLFamily:
    """diffusers ``AutoencoderKL``: folders, hub ids, single ``.safetensors`` files (VAE or checkpoint)."""

    name = "autoencoder-kl"

    @hookimpl
    def fixative_probe_model(self, path: Path) -> ModelEntry | None:
        entry = self._probe(path)
        if entry is not None:
            entry.details["loader"] = self.name
        return entry

    def _probe(self, path: Path) -> ModelEntry | None:
        if path.is_dir():
            for folder in (path / "vae", path):
                cfg = folder / "config.json"
                if cfg.is_file():
                    try:
                        config = json.loads(cfg.read_text())
                    except (OSError, ValueError):
                        continue
                    if config.get("_class_name") == "AutoencoderKL":
                        ch = int(config.get("latent_channels", 4))
                        family = _family_from(path.name, ch)
                        if ch == 4 and abs(float(config.get("scaling_factor", 0.18215)) - 0.13025) < 1e-4:
                            family = "sdxl"
                        return ModelEntry(
                            family, ch, str(folder), "kl", decoder=str(folder), details={"format": "folder"}
                        )
            return None
        if path.suffix != ".safetensors":
            return None
        try:
            keys = read_keys(path)
        except ModelNotFoundError:
            return None
        if _is_diffusers_keys(keys):
            ch = keys["encoder.conv_out.weight"][0] // 2
            return ModelEntry(
                _family_from(path.name, ch),
                ch,
                str(path),
                "kl",
                decoder=str(path),
                details={"format": "diffusers-file"},
            )
        prefix = _ldm_prefix(keys)
        if prefix is not None and f"{prefix}encoder.conv_out.weight" in keys:
            ch = keys[f"{prefix}encoder.conv_out.weight"][0] // 2
            return ModelEntry(
                _family_from(path.name, ch),
                ch,
                str(path),
                "kl",
                decoder=str(path),
                details={"format": "ldm-file", "prefix": prefix},
            )
        return None

    @hookimpl
    def fixative_probe_model_id(self, model_id: str, allow_download: bool) -> ModelEntry | None:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", model_id):
            return None
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        for local_only in (True,) if (offline or not allow_download) else (True, False):
            try:
                folder = snapshot_download(
                    model_id,
                    allow_patterns=["vae/*", "config.json", "*.safetensors"],
                    local_files_only=local_only,
                )
            except Exception:
                continue
            entry = self.fixative_probe_model(Path(folder))
            if entry:
                entry.details["hub_id"] = model_id
                return entry
        return None

    @hookimpl
    def fixative_load_encoder(
        self, entry: ModelEntry, device: torch.device, dtype: torch.dtype, with_decoder: bool
    ) -> Encoder | None:
        if entry.details.get("loader") != self.name:
            return None
        from diffusers import AutoencoderKL

        fmt = entry.details.get("format")
        name = entry.details.get("hub_id") or Path(entry.source).name
        has_decoder = True
        try:
            if fmt == "folder":
                vae = AutoencoderKL.from_pretrained(entry.source, local_files_only=True)
            else:
                vae, has_decoder = self._from_single_file(Path(entry.source), entry)
        except ModelNotFoundError:
            raise
        except Exception as exc:
            raise ModelNotFoundError(
                f"{name}: could not load as AutoencoderKL ({str(exc).splitlines()[0][:160]})"
            ) from None
        scaling, shift = LATENT_SCALING.get(entry.family, (None, None))
        if fmt != "folder" and scaling is not None:
            vae.register_to_config(scaling_factor=scaling, shift_factor=shift or None)
        vae.requires_grad_(False)
        encoder = wrap(vae, entry.family, name, entry.source, with_decoder and has_decoder)
        return encoder.to(device=device, dtype=dtype)

    @staticmethod
    def _from_single_file(path: Path, entry: ModelEntry):
        """Offline single-file load: convert LDM keys with diffusers' own converter, infer the config.

        Returns the VAE and whether the file held a whole decoder (an encoder-only file gets none, never
        a randomly initialised one).
        """
        from diffusers import AutoencoderKL

        state = read_state_dict(path)
        if entry.details.get("format") == "ldm-file":
            from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

            prefix = entry.details.get("prefix", "")
            n_down = 1 + max(
                int(m[1]) for k in state if (m := re.match(rf"{re.escape(prefix)}encoder\.down\.(\d+)\.", k))
            )
            state = {k: v for k, v in state.items() if k.startswith(prefix) and "model_ema" not in k}
            if prefix:
                state = {f"first_stage_model.{k[len(prefix) :]}": v for k, v in state.items()}
            state = convert_ldm_vae_checkpoint(
                state,
                {
                    "down_block_types": ["DownEncoderBlock2D"] * n_down,
                    "up_block_types": ["UpDecoderBlock2D"] * n_down,
                },
            )
        else:
            state = {
                k: v
                for k, v in state.items()
                if k.startswith(("encoder.", "decoder.", "quant_conv", "post_quant_conv"))
            }
        config = config_from_diffusers_keys({k: tuple(v.shape) for k, v in state.items()})
        vae = AutoencoderKL(**config)
        missing, unexpected = vae.load_state_dict(state, strict=False)
        decoder_missing = any(k.startswith(("decoder.", "post_quant_conv")) for k in missing)
        missing = [k for k in missing if not k.startswith(("decoder.", "post_quant_conv"))]
        if missing or unexpected:
            raise ModelNotFoundError(
                f"{path.name}: weights do not fit AutoencoderKL "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return vae, not decoder_missing
