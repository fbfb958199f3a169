"""The TAESD family of tiny autoencoders (taesd, taesdxl, taesd3, taef1, taef2, taesana).

The layout follows the reference ``taesd.py`` (MIT, Ollin Boer Bohan): plain ``nn.Sequential`` stacks,
so published ``*_encoder.pth`` files load strictly. taef2 adds a group-norm "pool" branch to the blocks
of the lowest-resolution stage; taesana downsamples 32x with a two-conv stem. diffusers'
``AutoencoderTiny`` covers neither, hence this module.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelNotFoundError
from .base import Encoder, ModelEntry
from .weights import read_keys, read_state_dict


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    def __init__(self, n_in: int, n_out: int, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out)
        )
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool: nn.Module | None = None
        if pool:  # taef2: a global group-norm branch added before the block
            wide = n_in * 4
            self.pool = nn.Sequential(
                nn.Conv2d(n_in, wide, 1, bias=False),
                nn.GroupNorm(4, wide),
                nn.ReLU(),
                nn.Conv2d(wide, n_in, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def build_encoder(latent_channels: int, variant: str = "f8", pool: bool = False) -> nn.Sequential:
    if variant == "f32":
        stem: list[nn.Module] = [
            _conv(3, 32, stride=2),
            nn.ReLU(),
            _conv(32, 64, stride=2),
            nn.ReLU(),
            Block(64, 64),
        ]
    else:
        stem = [_conv(3, 64), Block(64, 64)]
    down = lambda: _conv(64, 64, stride=2, bias=False)  # noqa: E731
    return nn.Sequential(
        *stem,
        down(), Block(64, 64), Block(64, 64), Block(64, 64),
        down(), Block(64, 64), Block(64, 64), Block(64, 64),
        down(), Block(64, 64, pool), Block(64, 64, pool), Block(64, 64, pool),
        _conv(64, latent_channels),
    )  # fmt: skip


def build_decoder(latent_channels: int, pool: bool = False) -> nn.Sequential:
    up = lambda: (nn.Upsample(scale_factor=2), _conv(64, 64, bias=False))  # noqa: E731
    return nn.Sequential(
        Clamp(), _conv(latent_channels, 64), nn.ReLU(),
        Block(64, 64, pool), Block(64, 64, pool), Block(64, 64, pool), *up(),
        Block(64, 64), Block(64, 64), Block(64, 64), *up(),
        Block(64, 64), Block(64, 64), Block(64, 64), *up(),
        Block(64, 64), _conv(64, 3),
    )  # fmt: skip


_FAMILY_BY_NAME = [("taef2", "taef2"), ("taef1", "taef1"), ("taesd3", "taesd3"), ("taesdxl", "taesdxl"),
                   ("taesana", "taesana"), ("taesd", "taesd")]  # fmt: skip


def _split(keys: dict[str, tuple[int, ...]]) -> tuple[dict, dict]:
    """Separate encoder and decoder keys, mapping diffusers AutoencoderTiny names to sequential ones."""
    enc, dec = {}, {}
    for key, shape in keys.items():
        if m := re.match(r"^encoder\.layers\.(\d+)\.(.*)$", key):
            enc[f"{m[1]}.{m[2]}"] = shape
        elif m := re.match(r"^decoder\.layers\.(\d+)\.(.*)$", key):
            dec[f"{int(m[1]) + 1}.{m[2]}"] = shape  # diffusers folds the input Clamp into forward()
        elif re.match(r"^\d+\.", key):
            enc[key] = shape
    return enc, dec


def describe_tiny(keys: dict[str, tuple[int, ...]], name: str) -> dict | None:
    """Tell what a TAESD-layout state dict holds, from its keys alone; None if it is not one."""
    enc, dec = _split(keys)
    info: dict = {}
    bare = not any(k.startswith(("encoder.", "decoder.")) for k in keys)
    if bare and enc and enc.get("0.weight", (0, 0))[1] != 3:
        dec, enc = enc, {}  # a bare decoder file: index 0 is the Clamp, so 1.weight takes the latents
    if enc:
        if "0.weight" not in enc or enc["0.weight"][1] != 3:
            return None
        last = max(int(k.split(".")[0]) for k in enc)
        info["latent_channels"] = enc[f"{last}.weight"][0]
        info["variant"] = "f32" if enc["0.weight"][0] == 32 else "f8"
        info["pool"] = any(".pool." in k for k in enc)
        info["encoder"] = True
    if dec:
        if "1.weight" not in dec:
            return None
        info.setdefault("latent_channels", dec["1.weight"][1])
        info.setdefault("pool", any(".pool." in k for k in dec))
        info["decoder"] = True
    if not info:
        return None
    lower = name.lower()
    family = next((fam for token, fam in _FAMILY_BY_NAME if token in lower), None)
    if family is None:
        ch = info["latent_channels"]
        family = (
            "taef2"
            if info.get("pool")
            else "taesana"
            if info.get("variant") == "f32"
            else ({4: "taesd", 16: "taef1", 32: "taef2"}.get(ch, f"tae-{ch}ch"))
        )
    info["family"] = family
    return info


def probe(path: Path) -> ModelEntry | None:
    """A ModelEntry for a TAESD-family file, or None when the file is something else."""
    try:
        keys = read_keys(path)
    except ModelNotFoundError:
        return None
    info = describe_tiny(keys, path.name)
    if not info:
        return None
    if not info.get("encoder"):
        return ModelEntry(info["family"], info["latent_channels"], str(path), "tiny-decoder", details=info)
    decoder = None
    if info.get("decoder"):
        decoder = str(path)
    else:
        sibling = path.with_name(path.name.replace("_encoder", "_decoder"))
        if sibling != path and sibling.is_file():
            decoder = str(sibling)
    return ModelEntry(
        info["family"], info["latent_channels"], str(path), "tiny", decoder=decoder, details=info
    )


def _state_for(path: str, part: str) -> dict[str, torch.Tensor]:
    state = read_state_dict(path)
    keys = {k: tuple(v.shape) for k, v in state.items()}
    if any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in keys):
        out = {}
        for key, value in state.items():
            if m := re.match(rf"^{part}\.layers\.(\d+)\.(.*)$", key):
                index = int(m[1]) + (1 if part == "decoder" else 0)
                out[f"{index}.{m[2]}"] = value
        return out
    return state


def load(entry: ModelEntry, device: torch.device, dtype: torch.dtype, with_decoder: bool = True) -> Encoder:
    info = entry.details or describe_tiny(read_keys(entry.source), Path(entry.source).name)
    if not info or not info.get("encoder"):
        raise ModelNotFoundError(f"{Path(entry.source).name}: this is a decoder only, not an encoder")
    ch, pool = info["latent_channels"], info.get("pool", False)
    encoder = build_encoder(ch, info.get("variant", "f8"), pool)
    try:
        encoder.load_state_dict(_state_for(entry.source, "encoder"), strict=True)
    except RuntimeError as exc:
        raise ModelNotFoundError(
            f"{Path(entry.source).name}: weights do not fit the {info['family']} layout "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    decoder = None
    if with_decoder and entry.decoder and info.get("variant", "f8") == "f8":
        decoder = build_decoder(ch, pool)
        try:
            decoder.load_state_dict(_state_for(entry.decoder, "decoder"), strict=True)
        except RuntimeError as exc:
            raise ModelNotFoundError(
                f"{Path(entry.decoder).name}: decoder weights do not fit ({str(exc).splitlines()[0][:160]})"
            ) from None
    downscale = 32 if info.get("variant") == "f32" else 8
    model = Encoder(
        Path(entry.source).stem.replace("_encoder", ""),
        info["family"],
        ch,
        downscale,
        encoder,
        decoder,
        source=entry.source,
    )
    return model.to(device=device, dtype=dtype)
