"""Issue 5's bad block input against qemu-system-aarch64 7.2: corrupt and truncated
qcow2 headers, unknown formats, missing files, backing loops, and images locked by a
running qemu-io or qemu-system-aarch64. Same exit status and stderr as QEMU, and no
image's bytes change (hashed before and after both runs)."""

from __future__ import annotations

import hashlib
import pathlib
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest
from sysoracle import (
    QEMU,
    Started,
    close_built,
    make_image,
    normalise,
    pyqemu_outcome,
    qemu_outcome,
)

from tests.conftest import require_tool

#: each case: one -drive (or -blockdev) with one fault in its image or its use
CASES = [
    "-drive file=bad-version.qcow2,if=none",
    "-drive file=bad-cluster-bits.qcow2,if=none",
    "-drive file=truncated.qcow2,if=none",
    "-drive file=truncated.qcow2,if=none,format=qcow2",
    "-drive file=empty.qcow2,if=none,format=qcow2",
    "-drive file=plain.raw,if=none,format=nosuchformat",
    "-drive file=good.qcow2,if=none,format=vmdk",
    "-drive file=good.qcow2,if=none,format=vdi",
    "-drive file=nonexist.qcow2,if=none",
    "-drive file=self-loop.qcow2,if=none",
    "-drive file=loop-a.qcow2,if=none",
    "-drive file=loop-b.qcow2,if=none,format=qcow2",
    "-drive file=missing-backing.qcow2,if=none",
    "-blockdev driver=qcow2,file.driver=file,file.filename=bad-version.qcow2,node-name=q",
]

#: images locked by another process, and how this run opens them
LOCKED = [
    "-drive file=locked.raw,if=none,format=raw",
    "-drive file=locked.raw,if=none,format=raw,readonly=on",
    "-drive file=locked.raw,if=none,format=raw,snapshot=on",
    "-drive file=locked.qcow2,if=none",
    "-drive file=locked.qcow2,if=none,readonly=on",
]


def _make_images(qemu_img: str, d: pathlib.Path) -> None:
    make_image(qemu_img, d / "good.qcow2", "qcow2", "1M")
    make_image(qemu_img, d / "plain.raw", "raw", "64K")
    good = (d / "good.qcow2").read_bytes()
    bad = bytearray(good)
    bad[4:8] = b"\x00\x00\x00\x09"  # version 9
    (d / "bad-version.qcow2").write_bytes(bytes(bad))
    bad = bytearray(good)
    bad[20:24] = b"\x00\x00\x00\x40"  # cluster_bits 64
    (d / "bad-cluster-bits.qcow2").write_bytes(bytes(bad))
    (d / "truncated.qcow2").write_bytes(good[:50])
    (d / "empty.qcow2").write_bytes(b"")
    for name in ("self-loop", "loop-a", "loop-b", "missing-backing", "locked"):
        make_image(qemu_img, d / f"{name}.qcow2", "qcow2", "1M")
    rebase = [qemu_img, "rebase", "-u", "-F", "qcow2", "-b"]
    subprocess.run([*rebase, "self-loop.qcow2", "self-loop.qcow2"], cwd=d, check=True)
    subprocess.run([*rebase, "loop-b.qcow2", "loop-a.qcow2"], cwd=d, check=True)
    subprocess.run([*rebase, "loop-a.qcow2", "loop-b.qcow2"], cwd=d, check=True)
    subprocess.run([*rebase, "gone.qcow2", "missing-backing.qcow2"], cwd=d, check=True)
    make_image(qemu_img, d / "locked.raw", "raw", "1M")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    d = tmp_path_factory.mktemp("badinput")
    _make_images(require_tool("qemu-img"), d)
    return d


def _hashes(d: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.iterdir()) if p.is_file()}


def _compare(args: str, workdir: pathlib.Path) -> None:
    before = _hashes(workdir)
    argv = shlex.split(args)
    theirs = qemu_outcome(argv, str(workdir))
    ours = pyqemu_outcome(argv, str(workdir))
    try:
        assert (ours.rc, normalise(ours.stderr)) == (theirs.rc, theirs.stderr), args
        assert ours.stdout == theirs.stdout == ""
    finally:
        close_built(ours)
    assert _hashes(workdir) == before, "an input image was written"


@pytest.mark.parametrize("args", CASES)
def test_bad_drive_as_qemu(args: str, workdir: pathlib.Path, qemu_system: str) -> None:
    _compare(args, workdir)


@pytest.fixture(scope="module")
def qemu_io_holder(workdir: pathlib.Path) -> Iterator[None]:
    """qemu-io holding locked.raw open read-write (it waits on stdin)."""
    p = subprocess.Popen([require_tool("qemu-io"), "-f", "raw", "locked.raw"], cwd=workdir,
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    assert p.poll() is None
    yield
    p.kill()
    p.wait()


@pytest.fixture(scope="module")
def qemu_system_holder(workdir: pathlib.Path, qemu_system: str) -> Iterator[None]:
    """A running qemu-system-aarch64 with locked.qcow2 attached to a virtio-blk."""
    s = Started([QEMU], ["-M", "virt", "-display", "none", "-S", "-nic", "none",
                         "-drive", "file=locked.qcow2,if=none,id=d0",
                         "-device", "virtio-blk-device,drive=d0"], str(workdir))
    yield
    s.cmd("quit")
    s.finish()


@pytest.mark.parametrize("args", LOCKED)
def test_locked_image_as_qemu(args: str, workdir: pathlib.Path, qemu_system: str,
                              qemu_io_holder: None, qemu_system_holder: None) -> None:
    _compare(args, workdir)


# ---------------------------------------------------------------- boot images
def _make_boot_files(d: pathlib.Path, qemu: str) -> None:
    import gzip
    import struct

    hdr = bytearray(64)  # an arm64 Image header (booting.rst), 1 MiB image
    struct.pack_into("<QQQ", hdr, 8, 0x80000, 1 << 20, 0xA)
    hdr[56:60] = b"ARM\x64"
    image = bytes(hdr) + bytes(4096)
    (d / "Image").write_bytes(image)
    packed = gzip.compress(image * 10)
    (d / "truncated.gz").write_bytes(packed[:len(packed) // 2])
    (d / "corrupt.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 20)
    bad = bytearray(packed)
    bad[-5] ^= 0xFF  # the trailer's CRC: QEMU's raw inflate never reads it
    (d / "bad-crc.gz").write_bytes(bytes(bad))
    bad = bytearray(packed)
    bad[3] = 0x20  # a reserved flag
    (d / "bad-flags.gz").write_bytes(bytes(bad))
    (d / "short.gz").write_bytes(packed[:3])
    (d / "header-only.gz").write_bytes(packed[:10])
    (d / "huge.gz").write_bytes(gzip.compress(bytes(200 << 20)))
    elf = bytearray(64)  # an AArch64 ELF header whose program headers are cut off
    elf[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HHIQQQIHHH", elf, 16, 2, 183, 1, 0x40080000, 64, 0, 0, 64, 56, 3)
    (d / "truncated.elf").write_bytes(bytes(elf))
    (d / "short.elf").write_bytes(bytes(elf[:40]))  # not even a header: an Image to QEMU
    (d / "huge.initrd").write_bytes(bytes(200 << 20))
    (d / "sub").mkdir()
    # device trees: QEMU's own (1 MiB, padded) and cuts of a compact copy of it
    subprocess.run([qemu, "-M", "virt,dumpdtb=virt.dtb", "-m", "128M", "-display", "none"],
                   cwd=d, check=True, capture_output=True)
    full = (d / "virt.dtb").read_bytes()
    (d / "cut-20.dtb").write_bytes(full[:20])  # version word missing
    (d / "cut-100.dtb").write_bytes(full[:100])  # totalsize larger than QEMU's buffer
    (d / "empty.dtb").write_bytes(b"")
    compact = bytearray(full)
    total = struct.unpack_from(">I", full, 36)[0] + struct.unpack_from(">I", full, 8)[0]
    strings_end = struct.unpack_from(">I", full, 12)[0] + struct.unpack_from(">I", full, 32)[0]
    struct.pack_into(">I", compact, 4, max(total, strings_end))
    compact = compact[:max(total, strings_end)]
    (d / "cut-40.dtb").write_bytes(compact[:40])  # no structure block at all
    (d / "cut-60.dtb").write_bytes(compact[:60])  # the root node's name cut
    (d / "cut-half.dtb").write_bytes(compact[:len(compact) // 2])


#: command lines QEMU refuses or survives, each compared with QEMU's exit status, stderr
#: and stdout (QEMU's gunzip prints on stdout)
BOOT_CASES = [
    "-kernel huge.gz",
    "-kernel Image -initrd huge.initrd",
    "-kernel sub",
    "-kernel Image -initrd sub",
    "-kernel truncated.elf",
    "-kernel short.elf",
    "-kernel truncated.gz",
    "-kernel corrupt.gz",
    "-kernel bad-crc.gz",
    "-kernel bad-flags.gz",
    "-kernel short.gz",
    "-kernel header-only.gz",
    "-kernel Image -dtb sub",
    "-kernel Image -dtb nonexist.dtb",
    "-kernel Image -dtb cut-20.dtb",
    "-kernel Image -dtb cut-100.dtb",
    "-kernel Image -dtb empty.dtb",
    "-kernel Image -dtb cut-40.dtb",
    "-kernel Image -dtb cut-60.dtb",
    "-kernel Image -dtb cut-half.dtb",
]


@pytest.fixture(scope="module")
def bootdir(tmp_path_factory: pytest.TempPathFactory, qemu_system: str) -> pathlib.Path:
    d = tmp_path_factory.mktemp("badboot")
    _make_boot_files(d, qemu_system)
    return d


@pytest.mark.parametrize("args", BOOT_CASES)
def test_bad_boot_image_as_qemu(args: str, bootdir: pathlib.Path, qemu_system: str) -> None:
    from sysoracle import pyqemu_argv

    before = _hashes(bootdir)
    argv = ["-m", "128M", "-cpu", "max", *shlex.split(args)]
    theirs = qemu_outcome(argv, str(bootdir))
    ours = qemu_outcome(argv, str(bootdir), program=pyqemu_argv(), timeout=180)
    assert _hashes(bootdir) == before
    assert "Traceback" not in ours.stderr
    assert (ours.rc, normalise(ours.stderr), ours.stdout) == \
        (theirs.rc, theirs.stderr, theirs.stdout)
