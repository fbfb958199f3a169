"""Reading weight files safely: safetensors, or ``torch.load(weights_only=True)``, never pickle code."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelNotFoundError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif path.suffix in (".pth", ".pt", ".bin"):
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise ModelNotFoundError(
                f"{path.name}: unsupported model file type {path.suffix!r} (use .safetensors or .pth)"
            )
    except ModelNotFoundError:
        raise
    except Exception as exc:  # corrupt archive, pickle with code, truncated file...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(f"{path.name}: not a readable weights file ({first[:160]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelNotFoundError(f"{path.name}: not a state dict of tensors")
    return state


def read_keys(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape, cheaply (safetensors headers are read without loading tensors)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as handle:
                return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        except Exception as exc:
            raise ModelNotFoundError(f"{path.name}: not a readable safetensors file ({exc})") from None
    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}
