"""retain_freed_memory: a large freed tensor stays in the process for the next step (glibc only)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from mmssl.train.host_memory import retain_freed_memory

GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"

# A 24 MiB tensor (an activation of a CPU training step) allocated, then freed, in a fresh process (the
# settings are process-wide), read through glibc's mallinfo2: bytes it mapped for the tensor, then the free
# bytes the heap keeps after the free. By default glibc maps such a block and unmaps it on
# free, so the next step faults its pages in (and the kernel zeroes them) again.
SCRIPT = textwrap.dedent(
    """
    import ctypes, sys, torch
    from mmssl.train.host_memory import retain_freed_memory

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = Mallinfo2
    if sys.argv[1] == "retain":
        assert retain_freed_memory()
    mapped_before = mallinfo2().hblkhd
    activation = torch.ones(6 * 2**20)
    mapped = mallinfo2().hblkhd - mapped_before
    del activation
    print(mapped, mallinfo2().fordblks)
    """
)
BLOCK = 24 * 2**20


def _mapped_and_kept(mode: str) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    mapped, kept = done.stdout.split()
    return int(mapped), int(kept)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's: other C libraries keep their own behaviour")
def test_a_freed_activation_stays_in_the_process():
    mapped, _ = _mapped_and_kept("default")
    assert mapped >= BLOCK  # glibc's own choice: mapped, and unmapped again on free
    mapped, kept = _mapped_and_kept("retain")
    assert mapped < BLOCK and kept >= BLOCK  # from the heap, and still there for the next step


def test_thresholds_outside_a_c_int_are_refused():
    with pytest.raises(ValueError, match="trim_threshold"):
        retain_freed_memory(trim_threshold=2**31)
