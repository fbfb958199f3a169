"""Finding encoders offline first: ``--model``, then the search path, then (only if allowed) the hub.

Every function takes ``hooks`` (``fixative.plugins.hooks()``, handed down by the API): the encoder
families are plugins, and this module never imports the plugin manager.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import ModelNotFoundError
from .base import Encoder, ModelEntry, resolve_device, resolve_dtype
from .weights import WEIGHT_SUFFIXES

GET_COMMAND = "fixative models --get taef2"
HOW_TO_GET_A_MODEL = (
    f"no image encoder found. Get the recommended one (5.4 MB, checked) with `{GET_COMMAND}`, "
    "or put the VAE (or tiny TAESD autoencoder) of the diffusion model you protect against in a folder and "
    "set FIXATIVE_MODELS=/that/folder, or pass --model PATH (ComfyUI models/vae, models/vae_approx and A1111 "
    "models/VAE folders are searched too)"
)
_MAX_PTH_PROBE_BYTES = 300 * 1024 * 1024  # .pth files are loaded whole to look inside; skip giant ones


def hub_cache() -> Path:
    """The Hugging Face cache (``HF_HUB_CACHE``, else ``HF_HOME``/hub), read now rather than at import."""
    hf = os.environ.get("HF_HUB_CACHE") or (
        Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    return Path(hf).expanduser()


def search_path() -> list[Path]:
    """Every folder searched for models, in order."""
    dirs: list[Path] = []
    for part in os.environ.get("FIXATIVE_MODELS", "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part).expanduser())
    home = Path.home()
    dirs.append(hub_cache())
    comfy_roots = [os.environ.get(v) for v in ("COMFYUI_DIR", "COMFYUI_PATH")] + [
        home / "ComfyUI",
        home / "comfy" / "ComfyUI",
    ]
    for root in filter(None, comfy_roots):
        for sub in ("vae", "vae_approx", "checkpoints"):
            dirs.append(Path(root) / "models" / sub)
    for root in filter(None, [os.environ.get("A1111_DIR"), home / "stable-diffusion-webui"]):
        dirs.append(Path(root) / "models" / "VAE")
    seen: set[Path] = set()
    return [d for d in dirs if not (d in seen or seen.add(d))]


def probe(path: Path, hooks) -> ModelEntry | None:
    """The entry of the first family that recognises ``path``, or None."""
    try:
        return hooks.fixative_probe_model(path=path)
    except ModelNotFoundError:
        return None


def _candidates(root: Path, depth: int = 4):
    if not root.is_dir():
        return
    stack = [(root, 0)]
    while stack:
        folder, level = stack.pop()
        try:
            children = sorted(folder.iterdir())
        except OSError:
            continue
        if (folder / "config.json").is_file() or (folder / "vae" / "config.json").is_file():
            yield folder
        for child in children:
            if child.is_dir() and level < depth and child.name != "blobs":
                stack.append((child, level + 1))
            elif child.is_file() and child.suffix in WEIGHT_SUFFIXES:
                if child.suffix != ".safetensors" and child.stat().st_size > _MAX_PTH_PROBE_BYTES:
                    continue
                yield child


def find_models(hooks, include_decoders: bool = False) -> list[ModelEntry]:
    """Every encoder on the search path (what ``fixative models`` lists)."""
    found: list[ModelEntry] = []
    seen: set[str] = set()
    for root in search_path():
        for candidate in _candidates(root):
            real = str(candidate.resolve())
            if real in seen:
                continue
            seen.add(real)
            entry = probe(candidate, hooks)
            if entry and (include_decoders or entry.kind != "tiny-decoder"):
                found.append(entry)
    return found


def default_entry(hooks, device: torch.device) -> ModelEntry:
    """The model used when none is named: tiny ones on CPU (fast), full VAEs on a GPU (stronger)."""
    entries = find_models(hooks)
    if not entries:
        raise ModelNotFoundError(HOW_TO_GET_A_MODEL)
    prefer_tiny = device.type == "cpu"

    def rank(entry: ModelEntry) -> tuple:
        downscale8 = entry.details.get("variant", "f8") == "f8"
        return ((entry.kind == "tiny") != prefer_tiny, not downscale8, entry.decoder is None, entry.source)

    return sorted(entries, key=rank)[0]


def resolve(spec: str, hooks, allow_download: bool = False) -> ModelEntry:
    """A model named by path, by file name or family on the search path, or by hub id."""
    path = Path(spec).expanduser()
    if path.exists():
        entry = probe(path, hooks)
        if entry is None:
            raise ModelNotFoundError(
                f"{path.name}: not an image encoder Fixative knows "
                "(expected a TAESD .pth/.safetensors, an AutoencoderKL file or folder)"
            )
        if entry.kind == "tiny-decoder":
            raise ModelNotFoundError(f"{path.name}: this is a decoder; pass the matching *_encoder file")
        return entry
    for entry in find_models(hooks):
        if spec in (
            entry.family,
            Path(entry.source).name,
            Path(entry.source).stem,
            Path(entry.source).stem.replace("_encoder", ""),
        ):
            return entry
    if "/" in spec and not spec.startswith((".", "/", "~")):
        entry = hooks.fixative_probe_model_id(model_id=spec, allow_download=allow_download)
        if entry:
            return entry
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ModelNotFoundError(
            f"model {spec!r} is not in the local Hugging Face cache{offline}; "
            "download it once with --allow-download, or pass a local file with --model PATH"
        )
    raise ModelNotFoundError(
        f"model {spec!r} not found: no such file, and no model of that name on the search path "
        "(see `fixative models`)"
    )


class EncoderCache:
    """Loaded encoders kept warm, least recently used dropped first (the server keeps one per process)."""

    def __init__(self, capacity: int = 3) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, Encoder] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, entry: ModelEntry, hooks, device: torch.device, dtype: torch.dtype, with_decoder: bool = True
    ) -> Encoder:
        key = (entry.source, str(device), str(dtype), with_decoder)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        encoder = hooks.fixative_load_encoder(
            entry=entry, device=device, dtype=dtype, with_decoder=with_decoder
        )
        if encoder is None:
            raise ModelNotFoundError(f"no plugin can load {entry.name} (family {entry.family})")
        with self._lock:
            self._items[key] = encoder
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return encoder

    def loaded(self) -> list[str]:
        with self._lock:
            return [enc.name for enc in self._items.values()]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = EncoderCache()


def _specs(models, hooks, device: torch.device) -> list:
    if models is None or models == [] or models == "":
        return [default_entry(hooks, device)]
    if isinstance(models, (str, ModelEntry, Encoder)):
        return [models]
    return list(models)


def entries_for(
    models: list[str | ModelEntry] | str | None,
    hooks,
    device: str | torch.device | None = "cpu",
    allow_download: bool = False,
) -> list[ModelEntry]:
    """What ``load_encoders`` would load, found without reading any weights: a missing or unknown model
    is said (``ModelNotFoundError``) before a long job starts rather than in its workers."""
    dev = resolve_device(device)
    return [
        spec if isinstance(spec, ModelEntry) else resolve(str(spec), hooks, allow_download)
        for spec in _specs(models, hooks, dev)
        if not isinstance(spec, Encoder)
    ]


def load_encoders(
    models: list[str | ModelEntry | Encoder] | str | None,
    hooks,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = "fp32",
    with_decoder: bool = True,
    allow_download: bool = False,
    cache: EncoderCache | None = CACHE,
) -> list[Encoder]:
    """Encoders for an ensemble: each spec may be a path, a name, a hub id, an entry or a loaded encoder."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    encoders = []
    for spec in _specs(models, hooks, dev):
        if isinstance(spec, Encoder):
            encoders.append(spec)
            continue
        entry = spec if isinstance(spec, ModelEntry) else resolve(str(spec), hooks, allow_download)
        encoders.append((cache or EncoderCache(capacity=1)).get(entry, hooks, dev, dt, with_decoder))
    for encoder in encoders:  # the layout that runs fastest, for protecting and measuring alike
        if isinstance(encoder, Encoder):
            encoder.channels_last()
    return encoders
