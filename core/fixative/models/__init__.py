"""Image encoders of latent diffusion models, whatever family they come from."""

from .base import Encoder, ModelEntry, precision_name, resolve_device, resolve_dtype
from .discovery import (
    CACHE,
    HOW_TO_GET_A_MODEL,
    entries_for,
    find_models,
    load_encoders,
    resolve,
    search_path,
)

__all__ = [
    "CACHE",
    "HOW_TO_GET_A_MODEL",
    "Encoder",
    "entries_for",
    "ModelEntry",
    "find_models",
    "load_encoders",
    "resolve",
    "resolve_device",
    "precision_name",
    "resolve_dtype",
    "search_path",
]
