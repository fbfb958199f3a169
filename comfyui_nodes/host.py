"""Everything the pack asks of ComfyUI itself, imported lazily so the pack loads in any ComfyUI.

ComfyUI's modules (``comfy.*``, ``folder_paths``) are only importable inside a running ComfyUI (or the
tests' stand-ins), so nothing here is imported at module load time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch


def model_management():
    import comfy.model_management

    return comfy.model_management


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """The device ComfyUI computes on and the dtype it runs VAEs in, so we never fight it for memory."""
    mm = model_management()
    device = mm.get_torch_device()
    try:
        dtype = mm.vae_dtype(device, [torch.float16, torch.bfloat16, torch.float32])
    except TypeError:  # older ComfyUI: vae_dtype() takes no arguments
        dtype = mm.vae_dtype()
    if device.type == "cpu":
        dtype = torch.float32  # half precision on the CPU is slow and gains nothing here
    return device, dtype


def make_room(device: torch.device, bytes_needed: int) -> None:
    """Ask ComfyUI to unload models until ``bytes_needed`` fit (a no-op on the CPU or older ComfyUI)."""
    mm = model_management()
    if device.type != "cpu" and hasattr(mm, "free_memory"):
        mm.free_memory(bytes_needed, device)


def interrupted() -> bool:
    """True once the user pressed Cancel in ComfyUI (the flag stays set; ComfyUI clears it when raising)."""
    return bool(model_management().processing_interrupted())


def interrupt_error() -> BaseException:
    return model_management().InterruptProcessingException()


def progress_bar(total: int):
    import comfy.utils

    return comfy.utils.ProgressBar(total)


@contextlib.contextmanager
def gradients_allowed() -> Iterator[None]:
    """ComfyUI runs nodes under ``torch.inference_mode()``; the optimisation needs autograd back."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def released_memory() -> Iterator[None]:
    """Give cached GPU memory back to ComfyUI however the node ends (done, failed or cancelled)."""
    try:
        yield
    finally:
        model_management().soft_empty_cache()


def cancel_check() -> Callable[[], bool]:
    return interrupted


def filename_list(folder: str) -> list[str]:
    import folder_paths

    try:
        return list(folder_paths.get_filename_list(folder))
    except KeyError:  # a ComfyUI without this model folder
        return []


def full_path(folder: str, name: str) -> str | None:
    import folder_paths

    try:
        return folder_paths.get_full_path(folder, name)
    except KeyError:
        return None
