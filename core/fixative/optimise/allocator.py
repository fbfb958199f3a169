"""Keep freed activation memory mapped while optimising on a CPU (glibc only).

Every optimiser step allocates and frees hundreds of MB of encoder activations. glibc serves blocks that
big with ``mmap`` and unmaps them on ``free``, so each step page-faults all of it in again. Measured on a
2-core CPU, taef2 at 512²: a million page faults and ~0.5 s of kernel time per 1.4 s step. Raising
glibc's mmap and trim thresholds for the duration of a run keeps that memory in the heap for the next
step (1.27 s per step, kernel time ~0.04 s); afterwards ``malloc_trim`` hands it back, so an idle server
does not hold it.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_GLIBC_DEFAULT = 128 * 1024  # both thresholds' documented defaults
# Kept: blocks up to one 64-channel 512² fp32 activation. Image-sized buffers of big images stay above
# it and are returned when freed, so peak memory stays flat (a 1 GiB limit took 4096² past 4 GB).
KEEP_BELOW = 64 * 2**20 + 2**16
# Huge images (``loop.SPLIT_VIEW_PIXELS`` and up), where memory binds and not time: blocks up to 16 MiB.
# The SD-sized VAE's 4096² step (four tiles, bf16, 2026-12-06): 3.94 GB and 2311 s per step keeping up to
# 64 MiB, 3.55 GB and +11 % time up to 16 MiB, 3.42 GB and +41 % up to 4 MiB, 3.39 GB and +31 % keeping
# nothing (glibc's own 128 KiB); one arena per process instead of one per thread changed nothing (3.96 GB).
HUGE_KEEP_BELOW = 16 * 2**20 + 2**16
_lock = threading.Lock()
_active = 0


@functools.cache  # platform.libc_ver() reads the Python binary: once per process is enough
def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


@contextmanager
def reuse_freed_memory(enabled: bool = True, keep_below: int = KEEP_BELOW) -> Iterator[bool]:
    """Within the block, freed blocks smaller than ``keep_below`` bytes stay mapped for reuse; yields
    whether the tuning is in effect.

    Nested and concurrent runs share one setting, the first one's: the thresholds are restored, and the
    memory returned to the system, when the last of them leaves.
    """
    global _active
    libc = _libc() if enabled else None
    if libc is None:
        yield False
        return
    with _lock:
        if _active == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, keep_below)
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        _active += 1
    try:
        yield True
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT)
                libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT)
                libc.malloc_trim(0)
