"""Give the heap memory the bot freed back to the system after its large jobs (on glibc), and keep start-up's
objects out of the cyclic collector's full passes.

glibc returns freed memory to the system on its own only from the top of each heap; what a job frees below live
blocks stays resident. After a run has unpickled fifty symbols' bars (and after the worker that learned was
replaced) that kept the bot 20-25 MB larger for good. `malloc_trim(0)` hands every free page back; it takes well
under a millisecond at the bot's size and runs in a thread. Elsewhere (musl, macOS) there is nothing to call and
nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc: no such function
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the freed heap pages to the system; False where the C library has no way to (nothing done)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def freeze_heap() -> None:
    """Keep what start-up built (modules, settings, the runtime) out of the cyclic collector's full passes.

    A full collection walks every tracked object: on the running bot's heap that paused the event loop for 30-45 ms,
    the worst clicks' latency; in a backtest's or a validation worker's process each full pass walked the analysis
    libraries' modules again (~70 ms a pass, about one a backtest of 7,500 trades). Frozen objects are never walked
    again; they are still freed by reference counting. Only the young generations are collected first: start-up's
    garbage is there (a full pass at this point of a real start took 73 ms and found nothing more to free).
    """
    gc.collect(1)
    gc.freeze()
