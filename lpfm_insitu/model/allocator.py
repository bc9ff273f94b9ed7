"""glibc malloc settings that let a model evaluation reuse the memory the previous one freed.

Every classification allocates and frees the same tens to hundreds of MB of tensors. With
glibc's defaults, blocks above the mmap threshold (dynamic, 128 KiB to 32 MiB) are
mapped and unmapped on every call, and a freed heap top over the trim threshold is given
back to the kernel, so each call faults its whole working set in again (the kernel zeroes
every page). Serving every block from the heap and keeping up to 1 GiB of freed memory
keeps that working set in the process (figures: README, "Benchmarks").

Applied once per process by ``load_model`` (so also inside LAMMPS, which it shares with
the model). Left alone when the user chose for themselves (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` set) or opted out with
``LPFM_MALLOC_TUNING=0``; a no-op on C libraries without glibc's ``mallopt``.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
#: freed memory the process may keep: bounds what a large run holds on to after a call
TRIM_THRESHOLD = 2**30
OPT_OUT = "LPFM_MALLOC_TUNING"
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds, once per process; True if they are raised."""
    if "applied" not in _state:
        _state["applied"] = _apply()
    return _state["applied"]


def _apply() -> bool:
    if os.environ.get(OPT_OUT, "1") == "0" or any(name in os.environ for name in USER_SETTINGS):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # No block gets its own mapping (mallopt caps the mmap threshold at 32 MiB, below a
    # 10^4-atom edge tensor), as MPI libraries that pin memory also arrange; mallopt
    # returns 1 on success, musl's stub 0.
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
