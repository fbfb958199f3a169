"""Stand-in for ``comfy.model_management``: device, VAE dtype, the interrupt flag, cache release.

The interrupt functions are ComfyUI's own logic (an RLock-guarded global flag; raising clears it).
"""

from __future__ import annotations

import threading

import torch

cpu_state_forced = True  # tests always run on the CPU
soft_empty_cache_calls = 0
free_memory_calls: list = []


def get_torch_device() -> torch.device:
    if not cpu_state_forced and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def vae_device() -> torch.device:
    return get_torch_device()


def vae_offload_device() -> torch.device:
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    return torch.device("cpu")


def vae_dtype(device=None, allowed_dtypes=()):
    """ComfyUI: fp32 on the CPU; on a GPU the first allowed half type it supports, else fp32."""
    device = device or get_torch_device()
    if torch.device(device).type == "cpu":
        return torch.float32
    for dtype in allowed_dtypes:
        if dtype == torch.bfloat16 and torch.cuda.is_bf16_supported():
            return dtype
        if dtype == torch.float16:
            return dtype
    return torch.float32


def free_memory(memory_required, device, keep_loaded=()):
    free_memory_calls.append((memory_required, str(device)))
    return []


def soft_empty_cache(force: bool = False) -> None:
    global soft_empty_cache_calls
    soft_empty_cache_calls += 1
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class InterruptProcessingException(Exception):
    pass


interrupt_processing_mutex = threading.RLock()
interrupt_processing = False


def interrupt_current_processing(value: bool = True) -> None:
    global interrupt_processing
    with interrupt_processing_mutex:
        interrupt_processing = value


def processing_interrupted() -> bool:
    with interrupt_processing_mutex:
        return interrupt_processing


def throw_exception_if_processing_interrupted() -> None:
    global interrupt_processing
    with interrupt_processing_mutex:
        if interrupt_processing:
            interrupt_processing = False
            raise InterruptProcessingException()
