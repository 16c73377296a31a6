"""A process's name and command line read straight from /proc, on Linux.

Process walks read the name or command line of every process (each new one, and all of them
every tenth collection). Through psutil each read costs three to four times the CPU of the
read itself (a psutil.Process to build, its open, decoding and error wrapping): on a host with
hundreds of processes that was most of what a collection cost. These give what psutil's
``Process.name()`` and ``Process.cmdline()`` give on Linux, and raise its exceptions: a test
compares them over every process of the machine.
"""

from __future__ import annotations

import os
import sys

import psutil

# As psutil decodes what /proc holds.
_ENCODING = sys.getfilesystemencoding()
_ERRORS = sys.getfilesystemencodeerrors()
_TRUNCATED = 15  # the kernel keeps the first 15 bytes of a process's name (its "comm")


def _read(path: str, pid: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(pid) from None
    except PermissionError:
        raise psutil.AccessDenied(pid) from None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except ProcessLookupError:  # ended while being read
        raise psutil.NoSuchProcess(pid) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def cmdline(root: str, pid: int) -> list[str]:
    """Its arguments; empty for a kernel thread or a zombie (psutil raises ZombieProcess for
    the latter, which the walks read as empty too)."""
    data = _read(f"{root}/{pid}/cmdline", pid).decode(_ENCODING, _ERRORS)
    if "\r" in data:  # psutil reads it as text, with universal newlines
        data = data.replace("\r\n", "\n").replace("\r", "\n")
    if not data:
        return []
    # Arguments end in NUL; a process that rewrote its title (setproctitle) may use spaces.
    sep = "\x00" if data.endswith("\x00") else " "
    if data.endswith(sep):
        data = data[:-1]
    args = data.split(sep)
    if sep == "\x00" and len(args) == 1 and " " in data:
        args = data.split(" ")
    return args


def name(root: str, pid: int) -> str:
    """Its name: the kernel's (from /proc/PID/stat), or, when that is cut at 15 characters,
    the command's file name it begins."""
    stat = _read(f"{root}/{pid}/stat", pid)
    # Between the first "(" and the last ")": the name may hold both.
    comm = stat[stat.find(b"(") + 1 : stat.rfind(b")")].decode(_ENCODING, _ERRORS)
    if len(comm) < _TRUNCATED:
        return comm
    try:
        args = cmdline(root, pid)
    except psutil.AccessDenied:
        return comm
    if args:
        full = os.path.basename(args[0])
        if full.startswith(comm):
            return full
    return comm
