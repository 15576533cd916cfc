"""Start Austin unable to open a file for writing, so its log cannot reach the console.

Austin 3.7 logs every sampling miss ("Cannot read remote memory", "Failed to get frame": a few a
second, the target changing under the reader) with ``syslog(3)``, opened with ``LOG_CONS``. Where
nothing listens on ``/dev/log`` (a container, a minimal VM, a host without journald or rsyslog),
glibc then writes each line to ``/dev/console``, which Austin can open when it runs as root. On a
serial console that is a millisecond a line with interrupts off: measured on a 2-vCPU VM, the four
Austins of ``make demo`` wrote ~12 lines a second there, and the demo's tick-to-decision p99 was
2.1-3.7 ms with those writes, 1.45-2.44 ms under this filter.

This file runs as its own script (stdlib only, ``python -I -S``) between austin-python and the Austin
binary: it installs a seccomp filter that fails ``open``/``openat`` with ``EACCES`` unless the file
is opened read-only, then ``exec``\\ s Austin (same pid, so austin-python sees the process it
started). Austin only reads (``/proc/<pid>/...``, ``process_vm_readv``) and writes its samples to the
pipe it inherits, so nothing else changes; glibc's syslog gives up silently when the console does
not open. ``PR_SET_NO_NEW_PRIVS`` comes with the filter: file capabilities on the Austin binary are
not gained, which is why :func:`observability.profiling.AustinSampler` only goes through here when
this process may write to ``/dev/console`` itself (root), never where ``setcap`` is the fix.

If the kernel refuses the filter (no seccomp, another architecture), Austin starts unfiltered: the
sampler reads ``Seccomp:`` in ``/proc/<pid>/status`` to tell.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

# <linux/filter.h>, <linux/seccomp.h>, <linux/audit.h>
_BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_JA = 0x05 | 0x00  # BPF_JMP | BPF_JA
_BPF_AND_K = 0x04 | 0x50 | 0x00  # BPF_ALU | BPF_AND | BPF_K
_BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_O_ACCMODE = 0o3
_NEVER = 0xFFFFFFFF  # no system call has this number

# machine -> (audit arch, open's number, openat's number); the flags are open's 2nd and openat's 3rd
# argument. openat2 takes them in a struct a filter cannot read; glibc's open() does not use it.
ARCHITECTURES = {
    "x86_64": (0xC000003E, 2, 257),
    "aarch64": (0xC00000B7, _NEVER, 56),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _argument(index: int) -> int:
    """Offset of the low 32 bits of argument ``index`` in ``struct seccomp_data`` (little-endian)."""
    return 16 + 8 * index


def read_only_filter(machine: str) -> bytes | None:
    """The BPF program (``struct sock_filter`` array) for ``machine``, or None when not supported."""
    if machine not in ARCHITECTURES or sys.byteorder != "little":
        return None
    arch, open_nr, openat_nr = ARCHITECTURES[machine]
    program = [
        _op(_BPF_LD_W_ABS, 4),  # 0: arch
        _op(_BPF_JEQ_K, arch, 0, 8),  # 1: another ABI: allow (10)
        _op(_BPF_LD_W_ABS, 0),  # 2: system call number
        _op(_BPF_JEQ_K, openat_nr, 3, 0),  # 3: openat: its flags (7)
        _op(_BPF_JEQ_K, open_nr, 0, 5),  # 4: neither: allow (10)
        _op(_BPF_LD_W_ABS, _argument(1)),  # 5: open's flags
        _op(_BPF_JA, 1),  # 6: (8)
        _op(_BPF_LD_W_ABS, _argument(2)),  # 7: openat's flags
        _op(_BPF_AND_K, _O_ACCMODE),  # 8
        _op(_BPF_JEQ_K, os.O_RDONLY, 0, 1),  # 9: read-only: allow (10), else refuse (11)
        _op(_BPF_RET_K, _SECCOMP_RET_ALLOW),  # 10
        _op(_BPF_RET_K, _SECCOMP_RET_ERRNO | errno.EACCES),  # 11
    ]
    return b"".join(program)


def forbid_writable_opens() -> bool:
    """Install the filter on this thread (inherited by what it ``exec``\\ s); False if refused."""
    program = read_only_filter(platform.machine())
    if program is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    instructions = ctypes.create_string_buffer(program, len(program))

    class _Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _Program(len(program) // 8, ctypes.addressof(instructions))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return bool(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0)


def exec_filtered(program: str, args: list[str]) -> None:
    """Replace this process with ``program args...`` under the filter (unfiltered if refused)."""
    forbid_writable_opens()
    os.execv(program, [program, *args])
