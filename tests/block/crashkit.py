"""Crash-consistency harness shared by the per-format kill tests.

A *writer* process (our driver in a child Python, or the real ``qemu-io``) runs a list of
operations on an image, flushing after each and reporting every completed operation on its
stdout; the parent SIGKILLs it at a random moment. Optionally the writer runs under
``strace`` with a delay injected after every write-family syscall, so that a random kill
lands almost surely *between* two of the writer's syscalls (the windows a metadata update
spans), not inside Python's start-up or a long data copy.

After each kill the caller's ``verify`` gets the model of the guest content made from the
completed operations and the interrupted one (if any); :func:`check_readback` implements the
usual rule: every byte outside the interrupted operation equals the model, every byte
inside it holds the old or the new data.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: one operation: ("w", offset, length, pattern byte), ("z", offset, length, may_unmap) or
#: ("d", offset, length, 0): a discard (whole clusters inside the range then read as zero:
#: the caller's ``discard_unit``; 0 when the format ignores discards)
Op = tuple[str, int, int, int]

#: the write-family syscalls a delay is injected after (Python's os.pwrite is pwrite64)
_WRITE_SYSCALLS = "pwrite64,pwritev,pwritev2,write,ftruncate,fallocate"

PY_WRITER = r"""
import json, os, sys
from pyqemu.block import open_image
path, fmt, ops_file = sys.argv[1], sys.argv[2], sys.argv[3]
with open(ops_file) as f:
    ops = json.load(f)
img = open_image(path, fmt, readonly=False)
print("pid", os.getpid(), flush=True)
for i, (kind, off, n, arg) in enumerate(ops):
    if kind == "w":
        img.write(off, bytes([arg]) * n)
    elif kind == "z":
        img.write_zeroes(off, n, may_unmap=bool(arg))
    else:
        img.discard(off, n)
    img.flush()
    print("done", i, flush=True)
print("end", flush=True)
sys.stdin.read()  # stay alive (not closing the image) until killed
"""


def strace_prefix(delay_us: int) -> list[str]:
    """argv prefix that delays every write-family syscall of the command by ``delay_us``
    (empty when strace is not installed: the kills are then purely time-based)."""
    exe = shutil.which("strace")
    if exe is None or delay_us <= 0:
        return []
    return [exe, "-f", "-qq", "-o", "/dev/null", "--seccomp-bpf",
            f"-etrace={_WRITE_SYSCALLS}",
            f"-einject={_WRITE_SYSCALLS}:delay_exit={delay_us}"]


@dataclass
class KillOutcome:
    """What the writer got done before the kill."""

    done: list[Op]
    inflight: Op | None
    finished: bool  # every operation completed before the kill


def _qemu_io_script(ops: Sequence[Op]) -> str:
    lines = []
    for kind, off, n, arg in ops:
        if kind == "w":
            lines.append(f"write -P {arg} {off} {n}")
        elif kind == "d":
            lines.append(f"discard {off} {n}")
        else:
            lines.append(f"write -z {'-u ' if arg else ''}{off} {n}")
        lines.append("flush")
    lines.append("sleep 1000000")
    return "\n".join(lines) + "\n"


def run_and_kill(writer: str, path: str, fmt: str, ops: Sequence[Op], workdir: str,
                 rnd: random.Random, *, max_delay: float, delay_us: int) -> KillOutcome:
    """Run ``writer`` ("pyqemu" or "qemu-io") over ``ops`` on ``path``; SIGKILL it a random
    time (0..max_delay s) after it opened the image."""
    ops_file = os.path.join(workdir, "ops.json")
    if writer == "pyqemu":
        with open(ops_file, "w") as f:
            json.dump(list(ops), f)
        argv = [sys.executable, "-c", PY_WRITER, path, fmt, ops_file]
        stdin = subprocess.PIPE
    else:
        script = os.path.join(workdir, "ops.qemu-io")
        with open(script, "w") as f:
            f.write(_qemu_io_script(ops))
        # the shell prints its pid, then becomes qemu-io (the process to kill under strace)
        argv = ["sh", "-c", 'echo pid $$; exec stdbuf -o0 qemu-io -f "$1" "$2" < "$3"', "sh",
                fmt, path, script]
        stdin = subprocess.DEVNULL
    proc = subprocess.Popen(strace_prefix(delay_us) + argv, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""
    pid: int | None = None
    deadline = time.monotonic() + 60.0
    kill_at: float | None = None
    while True:
        now = time.monotonic()
        if kill_at is not None and now >= kill_at:
            break
        if now > deadline:
            break
        r, _, _ = select.select([fd], [], [], 0.005)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
        if pid is None and b"\n" in buf and buf.startswith(b"pid "):
            pid = int(buf.split(b"\n", 1)[0].split()[1])
            kill_at = time.monotonic() + rnd.uniform(0.0, max_delay)
    assert pid is not None, f"writer did not start: {buf!r} {proc.stderr.read()!r}"
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.pid != pid:
        # strace exits once its tracee is gone
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
    try:
        while chunk := os.read(fd, 65536):
            buf += chunk
    except BlockingIOError:
        pass
    err = proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    assert "Traceback" not in err, err
    text = buf.decode(errors="replace")
    if writer == "pyqemu":
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # a line cut by the kill
        ndone = sum(1 for line in lines if line.startswith("done "))
    else:
        # qemu-io prints (and flushes) a prompt when each command has completed; each
        # operation is two commands (write, flush), the first prompt precedes them all
        ndone = max(0, text.count("qemu-io> ") - 1) // 2
    assert "error" not in err.lower() and "failed" not in text.lower(), (err, text)
    ndone = min(ndone, len(ops))
    inflight = ops[ndone] if ndone < len(ops) else None
    return KillOutcome(list(ops[:ndone]), inflight, ndone == len(ops))


def apply_op(model: bytearray, op: Op, discard_unit: int = 0) -> None:
    """Apply one operation to the guest-content model."""
    kind, off, n, _ = op
    if kind == "d":
        if discard_unit:
            a = -(-off // discard_unit) * discard_unit
            end = off + n
            b = len(model) if end == len(model) else end // discard_unit * discard_unit
            if b > a:
                model[a:b] = bytes(b - a)
        return
    model[off:off + n] = bytes(n) if kind == "z" else bytes([op[3]]) * n


def check_readback(got: bytes, model: bytearray, inflight: Op | None, tag: str,
                   discard_unit: int = 0) -> None:
    """Assert ``got`` equals ``model`` except inside the interrupted operation, whose bytes
    may each be old or new; then make ``model`` the content now on disk."""
    if inflight is None:
        assert got == bytes(model), f"{tag}: flushed data lost"
        return
    alt = bytearray(model)
    apply_op(alt, inflight, discard_unit)
    lo, hi = inflight[1], inflight[1] + inflight[2]
    if inflight[0] == "d" and discard_unit:
        lo = lo // discard_unit * discard_unit
        hi = min(len(model), -(-hi // discard_unit) * discard_unit)
    assert got[:lo] == model[:lo] and got[hi:] == model[hi:], \
        f"{tag}: data outside the interrupted write changed"
    for j in range(lo, hi):
        assert got[j] in (model[j], alt[j]), f"{tag}: byte {j} is neither old nor new"
    model[:] = got


def random_ops(rnd: random.Random, size: int, count: int, *, zero: bool = True,
               discard: bool = False, max_len: int = 300 * 1024, align: int = 1) -> list[Op]:
    """Random writes (and zero-writes, discards) of 1 byte to ``max_len`` anywhere."""
    ops: list[Op] = []
    kinds = ["w", "w", "w"] + (["z"] if zero else []) + (["d"] if discard else [])
    for _ in range(count):
        kind = rnd.choice(kinds)
        off = rnd.randrange(0, size - 1) // align * align
        n = max(align, rnd.randint(1, min(max_len, size - off)) // align * align)
        n = min(n, size - off)
        arg = rnd.randint(1, 255) if kind == "w" else rnd.randint(0, 1) if kind == "z" else 0
        ops.append((kind, off, n, arg))
    return ops


def crash_loop(path: str, fmt: str, size: int, workdir: str, *, writer: str, kills: int,
               seed: int, make_ops: Callable[[random.Random, bytearray], list[Op]],
               verify: Callable[[str, bytearray, Op | None, str], None],
               max_delay: float = 0.5, delay_us: int = 15000,
               discard_unit: int = 0) -> tuple[int, bytearray]:
    """Kill ``kills`` writers in turn on one image; ``verify(path, model, inflight, tag)``
    after each. Returns how many kills landed with an operation in flight, and the model
    of the content the image holds at the end."""
    rnd = random.Random(seed)
    model = bytearray(size)
    interrupted = 0
    for i in range(kills):
        ops = make_ops(rnd, model)
        out = run_and_kill(writer, path, fmt, ops, workdir, rnd, max_delay=max_delay,
                           delay_us=delay_us)
        for op in out.done:
            apply_op(model, op, discard_unit)
        interrupted += out.inflight is not None
        verify(path, model, out.inflight, f"kill {i} ({writer}, seed {seed})")
    return interrupted, model
