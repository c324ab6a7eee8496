"""The bot gives the heap memory it freed back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.ops import memory
from bot.ops.memory import release_free_memory

# Holes left below live blocks: glibc keeps them resident until malloc_trim hands their pages back.
HOLES = """
import sys
from bot.ops.memory import release_free_memory

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

blocks = [bytearray(100_000) for _ in range(2_000)]  # 200 MB from the heap (below the mmap threshold)
for block in blocks:
    block[::4096] = b"x" * len(block[::4096])  # touched: resident
kept = blocks[::50]  # every 50th stays live, so the heap's top cannot simply shrink
del blocks
before = rss_mb()
assert release_free_memory()
print(before, rss_mb())
"""


def test_freed_heap_pages_go_back_to_the_system() -> None:
    done = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True, timeout=60, check=True)
    before, after = map(float, done.stdout.split())
    assert before - after > 100, (before, after)  # most of the 196 MB freed below live blocks


def test_without_a_c_library_that_can_trim_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    memory._malloc_trim.cache_clear()
    try:
        assert release_free_memory() is False
    finally:
        monkeypatch.undo()
        memory._malloc_trim.cache_clear()
    assert release_free_memory() is True  # this machine's glibc
