"""Image locking interoperates with QEMU's (OFD byte locks, block/file-posix.c), both ways:
pyqemu-img against an image held by qemu-io, and qemu-img against one held by pyqemu."""

from __future__ import annotations

import contextlib
import select
import subprocess
import time
from collections.abc import Iterator

import pytest

from pyqemu.block import open_image
from pyqemu.block.errors import ImageLockError


@contextlib.contextmanager
def held_by_qemu_io(qemu_io, path: str, fmt: str, readonly: bool) -> Iterator[None]:
    """Keep ``path`` open in an interactive qemu-io until the block ends."""
    args = [qemu_io.path, "-f", fmt] + (["-r"] if readonly else []) + [path]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        # the prompt appears once the image is open (and locked)
        buf = b""
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        while b"qemu-io>" not in buf:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"qemu-io did not start: {buf!r}")
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                buf += proc.stdout.read1(4096)  # type: ignore[attr-defined]
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


COMMANDS = [
    ["info", "{img}"], ["info", "-U", "{img}"], ["check", "{img}"], ["check", "-U", "{img}"],
    ["map", "--output=json", "{img}"], ["map", "-U", "--output=json", "{img}"],
    ["resize", "{img}", "+1M"], ["snapshot", "-l", "{img}"], ["measure", "-O", "raw", "{img}"],
    ["create", "-f", "{fmt}", "{img}", "1M"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: "_".join(c[:2]))
@pytest.mark.parametrize("readonly", [False, True], ids=["rw", "ro"])
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_pyqemu_img_vs_qemu_io_holder(fmt, readonly, cmd, tmp_path, monkeypatch, qemu_img,
                                      qemu_io, pyqemu_img) -> None:
    from pyqemu.block import FORMATS

    if fmt not in FORMATS:
        pytest.skip(f"{fmt} not registered")
    monkeypatch.chdir(tmp_path)
    qemu_img.create(fmt, f"a.{fmt}", "4M")
    qemu_img.create(fmt, f"b.{fmt}", "4M")
    args_a = [c.format(img=f"a.{fmt}", fmt=fmt) for c in cmd]
    args_b = [c.format(img=f"b.{fmt}", fmt=fmt) for c in cmd]
    with held_by_qemu_io(qemu_io, f"a.{fmt}", fmt, readonly), \
            held_by_qemu_io(qemu_io, f"b.{fmt}", fmt, readonly):
        ours = pyqemu_img.run(*args_a)
        theirs = qemu_img.run(*args_b)
    assert ours.rc == theirs.rc, (ours, theirs)
    norm = ours.err.replace("pyqemu-img", "qemu-img").replace(f"a.{fmt}", f"b.{fmt}")
    # only the lock lines matter here (qemu prints the raw probing warning as we do)
    assert [ln for ln in norm.splitlines() if "lock" in ln or "another process" in ln] == \
        [ln for ln in theirs.err.splitlines() if "lock" in ln or "another process" in ln]


@pytest.mark.parametrize("readonly", [False, True], ids=["rw", "ro"])
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_qemu_sees_our_locks_like_qemu_ios(fmt, readonly, tmp_path, monkeypatch, qemu_img,
                                           qemu_io) -> None:
    """While pyqemu holds an image, qemu-img/qemu-io get exactly what they get while
    qemu-io holds the same image the same way."""
    from pyqemu.block import FORMATS

    if fmt not in FORMATS:
        pytest.skip(f"{fmt} not registered")
    monkeypatch.chdir(tmp_path)
    qemu_img.create(fmt, f"a.{fmt}", "4M")
    probes = [["info", f"a.{fmt}"], ["check", f"a.{fmt}"], ["resize", "-f", fmt, f"a.{fmt}",
                                                            "+1M"],
              ["map", f"a.{fmt}"], ["info", "-U", f"a.{fmt}"]]

    def run_probes() -> list[tuple[int, str]]:
        out = [(r.rc, r.err) for r in (qemu_img.run(*p) for p in probes)]
        io = qemu_io.run(f"a.{fmt}", "read 0 512", fmt=fmt)
        out.append((io.rc, io.err + io.out.split("\n")[0]))
        io = qemu_io.run(f"a.{fmt}", "read 0 512", fmt=fmt, force_share=True)
        out.append((io.rc, io.err))
        return out

    with held_by_qemu_io(qemu_io, f"a.{fmt}", fmt, readonly):
        expected = run_probes()
    image = open_image(f"a.{fmt}", fmt, readonly=readonly)
    try:
        got = run_probes()
    finally:
        image.close()
    # resize changed the size when it succeeded: compare outcomes, not sizes
    assert [(rc, err) for rc, err in got] == [(rc, err) for rc, err in expected]
    assert any(rc != 0 for rc, _ in expected) or (fmt == "raw")


def test_conflict_inside_one_process(tmp_path, qemu_img) -> None:
    """OFD locks belong to open file descriptions, so two opens in one process conflict
    exactly as two processes would (Python's fcntl.lockf would not)."""
    pytest.importorskip("pyqemu.block.qcow2")
    path = str(tmp_path / "a.qcow2")
    qemu_img.create("qcow2", path, "1M")
    first = open_image(path, "qcow2", readonly=False)
    try:
        with pytest.raises(ImageLockError) as exc:
            open_image(path, "qcow2", readonly=False)
        assert str(exc.value) == ('Failed to get "write" lock\n'
                                  f"Is another process using the image [{path}]?")
        open_image(path, "qcow2", force_share=True).close()
    finally:
        first.close()
    open_image(path, "qcow2", readonly=False).close()  # released on close
