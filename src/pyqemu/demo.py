"""The main job (``python -m pyqemu.demo``): a real pyqemu-img session, checked by QEMU.

In a temporary directory: generate a raw disk with data and holes, create a qcow2 image
with pyqemu-img, copy the data in with ``convert``, show ``info``, ``check`` and ``map``,
take and list an internal snapshot, then let the real qemu-img ``check`` the image and
``compare`` it with the raw source. Every command is printed before it runs, with its
output. Exit status 0 only if every step agreed; steps that cannot run yet (a format or
subcommand still missing, qemu-img not installed) are reported as skipped, and a skipped
verification is a failure.

Then a real arm64 guest program: Debian's busybox-static runs a shell pipeline (sort, awk,
sha256sum, gzip round trip) under ``pyqemu-aarch64`` and under the real ``qemu-aarch64``;
the outputs must be identical. ``--boot`` also boots Debian's arm64 Linux kernel with a
busybox initramfs on ``pyqemu-system-aarch64 -M virt`` to its init, which prints
/proc/cpuinfo and powers the machine off (several CPU-minutes on the python backend).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable

__all__ = ["main"]

DISK_SIZE = 16 << 20


def _generate_raw(path: str) -> None:
    """A 16 MiB disk: a boot-sector-like header, patterned data, random data, holes."""
    rng = random.Random(0x5EED)
    with open(path, "wb") as f:
        f.truncate(DISK_SIZE)
        f.seek(0)
        f.write(b"pyqemu demo disk".ljust(510, b"\0") + b"\x55\xaa")
        f.seek(1 << 20)
        f.write(bytes(range(256)) * 1024)  # 256 KiB of a counting pattern
        f.seek(5 << 20 | 4096 + 123)  # unaligned start, crosses clusters
        f.write(rng.randbytes(200_000))
        f.seek(DISK_SIZE - 4096)
        f.write(b"\xab" * 4096)


class Session:
    """Runs commands, prints them and their output, and keeps the score."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.failures: list[str] = []
        self.skipped: list[str] = []

    def say(self, text: str) -> None:
        print(text, flush=True)

    def pyqemu_img(self, *args: str, expect: tuple[int, ...] = (0,)) -> tuple[int, str]:
        """Run ``pyqemu-img args`` in this process (cwd = the work directory)."""
        from pyqemu.cli.img import main

        self.say(f"$ pyqemu-img {' '.join(args)}")
        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        try:
            os.chdir(self.workdir)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(list(args))
        finally:
            os.chdir(cwd)
        text = out.getvalue() + err.getvalue()
        if text:
            self.say(text.rstrip("\n").replace("\r", "\n"))
        if rc not in expect:
            self.failures.append(f"pyqemu-img {' '.join(args)} exited {rc}")
            self.say(f"  -> FAILED (exit {rc})")
        return rc, out.getvalue()

    def agree(self, *args: str) -> None:
        """Run ``args`` with both tools and require byte-identical output."""
        exe = shutil.which("qemu-img")
        if exe is None:
            self.skipped.append(f"qemu-img {' '.join(args)} (qemu-img not installed)")
            return
        from pyqemu.cli.img import main

        self.say(f"$ pyqemu-img {' '.join(args)}   vs   $ qemu-img {' '.join(args)}")
        out = io.StringIO()
        cwd = os.getcwd()
        try:
            os.chdir(self.workdir)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                main(list(args))
        finally:
            os.chdir(cwd)
        theirs = subprocess.run([exe, *args], cwd=self.workdir, capture_output=True,
                                text=True, timeout=300, check=False).stdout
        if out.getvalue() == theirs:
            self.say(f"identical output ({len(theirs.splitlines())} lines)")
        else:
            self.failures.append(f"{' '.join(args)}: output differs from qemu-img")
            self.say("  -> FAILED: outputs differ\n--- pyqemu-img\n" + out.getvalue()
                     + "--- qemu-img\n" + theirs)

    def qemu_img(self, *args: str) -> int | None:
        """Run the real qemu-img (the oracle); None if it is not installed."""
        exe = shutil.which("qemu-img")
        if exe is None:
            self.skipped.append(f"qemu-img {' '.join(args)} (qemu-img not installed)")
            self.say(f"$ qemu-img {' '.join(args)}   [skipped: qemu-img not installed]")
            return None
        self.say(f"$ qemu-img {' '.join(args)}")
        try:
            proc = subprocess.run([exe, *args], cwd=self.workdir, capture_output=True,
                                  text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            self.failures.append(f"qemu-img {' '.join(args)} timed out")
            return None
        text = proc.stdout + proc.stderr
        if text:
            self.say(text.rstrip("\n"))
        if proc.returncode != 0:
            self.failures.append(f"qemu-img {' '.join(args)} exited {proc.returncode}")
            self.say(f"  -> FAILED (exit {proc.returncode})")
        return proc.returncode

    def step(self, title: str, func: Callable[[], object]) -> None:
        self.say(f"\n== {title}")
        try:
            func()
        except Exception as exc:  # noqa: BLE001 - the demo reports, it never tracebacks
            self.failures.append(f"{title}: {type(exc).__name__}: {exc}")
            self.say(f"  -> FAILED: {type(exc).__name__}: {exc}")


def _available(fmt: str) -> bool:
    from pyqemu.block import FORMATS

    return fmt in FORMATS


def _has_command(cmd: str) -> bool:
    import importlib

    try:
        importlib.import_module(f"pyqemu.cli.img_{cmd}")
    except Exception:  # noqa: BLE001 - missing or half-written module
        return False
    return True


def run(workdir: str, boot: bool = False) -> int:
    s = Session(workdir)
    fmt = "qcow2" if _available("qcow2") else "raw"
    if fmt != "qcow2":
        s.skipped.append("qcow2 (format not registered yet): the demo uses raw instead")
        s.say("note: qcow2 is not available yet; using raw")
    src, disk = "source.raw", f"disk.{fmt}"

    def generate() -> None:
        _generate_raw(os.path.join(workdir, src))
        s.say(f"wrote {src}")

    s.step("generate a 16 MiB raw disk with data and holes", generate)
    s.step("create the image", lambda: s.pyqemu_img("create", "-f", fmt, disk,
                                                    str(DISK_SIZE)))

    def copy_in() -> None:
        if _has_command("convert"):
            s.pyqemu_img("convert", "-n", "-f", "raw", "-O", fmt, src, disk)
            return
        s.skipped.append("pyqemu-img convert (not available yet): copied with the block API")
        s.say("note: 'convert' is not available yet; copying through pyqemu.block directly")
        from pyqemu.block import open_image

        image = open_image(os.path.join(workdir, disk), fmt, readonly=False)
        try:
            with open(os.path.join(workdir, src), "rb") as f:
                pos = 0
                while chunk := f.read(1 << 20):
                    if chunk.count(0) != len(chunk):
                        image.write(pos, chunk)
                    pos += len(chunk)
        finally:
            image.close()

    s.step("write the data into it", copy_in)
    s.step("info", lambda: s.pyqemu_img("info", disk))
    s.step("check", lambda: s.pyqemu_img("check", disk))
    s.step("map", lambda: s.pyqemu_img("map", disk))

    def snapshots() -> None:
        if fmt != "qcow2":
            s.skipped.append("snapshot (needs qcow2)")
            s.say("skipped: internal snapshots need qcow2")
            return
        s.pyqemu_img("snapshot", "-c", "demo-snap", disk)
        s.pyqemu_img("snapshot", "-l", disk)

    s.step("take an internal snapshot", snapshots)
    s.step("verify with the real qemu-img: check", lambda: s.qemu_img("check", disk))
    s.step("verify with the real qemu-img: compare with the source",
           lambda: s.qemu_img("compare", "-f", "raw", "-F", fmt, src, disk))

    def agreement() -> None:
        s.agree("info", "--output=json", disk)
        s.agree("map", "--output=json", disk)

    s.step("verify with the real qemu-img: info and map agree byte for byte", agreement)
    s.step("a real arm64 guest: Debian's busybox under pyqemu-aarch64 and qemu-aarch64",
           lambda: _guest_busybox(s))
    if boot:
        s.step("boot Debian's arm64 Linux on pyqemu-system-aarch64 -M virt",
               lambda: _guest_boot(s))

    s.say("\n== summary")
    for item in s.skipped:
        s.say(f"skipped: {item}")
    for item in s.failures:
        s.say(f"FAILED: {item}")
    verified = not any("qemu-img not installed" in x for x in s.skipped)
    ok = not s.failures and verified
    s.say("all steps agreed with QEMU" if ok else "the demo did NOT fully succeed")
    return 0 if ok else 1


GUEST_PIPELINE = ("seq 1 2000 | sort -r | awk '{s += $1} END {print \"sum\", s}'; "
                  "echo pyqemu | sha256sum; "
                  "seq 1 500 > /tmp/pyqemu-demo.$$; gzip -c /tmp/pyqemu-demo.$$ | gzip -dc "
                  "| md5sum; rm -f /tmp/pyqemu-demo.$$; uname -m")


def _guest_busybox(s: Session) -> None:
    from pyqemu.testing.guest_images import GuestImageError, busybox_static

    qemu = shutil.which("qemu-aarch64")
    if qemu is None:
        s.skipped.append("busybox guest (qemu-aarch64 not installed)")
        return
    try:
        bb = str(busybox_static())
    except GuestImageError as exc:
        s.skipped.append(f"busybox guest ({exc})")
        s.say(f"skipped: {exc}")
        return
    argv = [bb, "sh", "-c", GUEST_PIPELINE]
    s.say(f"$ pyqemu-aarch64 busybox sh -c {GUEST_PIPELINE!r}")
    ours = subprocess.run([sys.executable, "-m", "pyqemu.cli.user", *argv], capture_output=True,
                          text=True, timeout=600, check=False)
    s.say(ours.stdout.rstrip("\n") + ours.stderr.rstrip("\n"))
    theirs = subprocess.run([qemu, *argv], capture_output=True, text=True, timeout=600,
                            check=False)
    if (ours.stdout, ours.returncode) == (theirs.stdout, theirs.returncode):
        s.say(f"identical to qemu-aarch64 (exit {theirs.returncode})")
    else:
        s.failures.append("busybox pipeline: output differs from qemu-aarch64")
        s.say("  -> FAILED\n--- qemu-aarch64\n" + theirs.stdout + theirs.stderr)


BOOT_SCRIPT = "cat /proc/cpuinfo | head -4; uname -a; echo \"guest says: $(cat /proc/version)\"\n"


def _guest_boot(s: Session) -> None:
    from pyqemu.testing.guest_images import (
        INIT_MARKER,
        GuestImageError,
        build_initramfs,
        debian_kernel,
    )

    try:
        kernel = debian_kernel()
        initrd = build_initramfs(modules=(), init_script=BOOT_SCRIPT)
    except GuestImageError as exc:
        s.skipped.append(f"Linux boot ({exc})")
        s.say(f"skipped: {exc}")
        return
    argv = ["-M", "virt", "-cpu", "max", "-m", "256M", "-nographic", "-kernel", str(kernel),
            "-initrd", str(initrd), "-append",
            "console=ttyAMA0 nowatchdog cryptomgr.notests quiet"]
    s.say("$ pyqemu-system-aarch64 " + " ".join(argv))
    proc = subprocess.run([sys.executable, "-m", "pyqemu.cli.system", *argv],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=3600, check=False)
    s.say(proc.stdout.rstrip("\n") + proc.stderr.rstrip("\n"))
    if INIT_MARKER not in proc.stdout or proc.returncode != 0:
        s.failures.append(f"Linux boot: no init marker or exit {proc.returncode}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    boot = "--boot" in args
    try:
        with tempfile.TemporaryDirectory(prefix="pyqemu-demo-") as workdir:
            return run(workdir, boot=boot)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback
        print(f"demo: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
