"""How the C library hands memory to large tensors (no torch import: the command line calls it first)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["reuse_freed_memory", "release_freed_memory"]


#: glibc ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: ``mallopt`` takes a C ``int``: larger values would wrap around (8 GiB becomes 0, "trim always").
_INT_MAX = 2**31 - 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def reuse_freed_memory(largest_block_bytes: int = 1 << 30, keep_bytes: int = _INT_MAX) -> bool:
    """Let glibc keep freed memory for the next allocation instead of returning it to the system at once.

    By default glibc serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
    unmaps it on free, so each
    convolution output of a large tile is new memory the kernel must fault in and zero: on a 4096² → 8192²
    tiled run this made half of the CPU time system time. Blocks up to ``largest_block_bytes`` then come from
    the heap and up to ``keep_bytes`` of freed memory stay with the process (its resident size stays near its
    peak). The command line calls this at start; a no-op (``False``) where the C library is not glibc or where
    ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` is set (glibc then follows the environment).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    if {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ):
        return False
    if not 0 < largest_block_bytes <= _INT_MAX or not 0 <= keep_bytes <= _INT_MAX:
        raise ValueError(f"mallopt takes values up to {_INT_MAX} bytes")
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, int(largest_block_bytes)) and libc.mallopt(_M_TRIM_THRESHOLD, int(keep_bytes))
    )


def release_freed_memory() -> bool:
    """Give the memory the process has freed back to the system now (glibc ``malloc_trim``): called between the
    sampling of a large image and its consistency check, so that the peak is the larger of the two, not their
    sum. A no-op (``False``) where the C library is not glibc."""
    libc = _libc()
    return bool(libc is not None and hasattr(libc, "malloc_trim") and libc.malloc_trim(0))
