"""Shared block-layer fixtures: the real qemu-img/qemu-io (oracles) and pyqemu-img.

Fixtures:
  ``qemu_img``    :class:`QemuImg` running Debian's ``qemu-img`` (skips when absent)
  ``qemu_io``     :class:`QemuIo` running Debian's ``qemu-io`` (skips when absent)
  ``pyqemu_img``  :class:`PyqemuImg`, the same API as ``qemu_img`` but running
                  ``pyqemu.cli.img.main`` in this process (fast); ``.subprocess(...)``
                  runs the installed console script instead.

Both image tools share one API, so a test can do the same thing with each and compare::

    def test_info(tmp_path, qemu_img, pyqemu_img):
        img = str(tmp_path / "a.qcow2")
        qemu_img.create("qcow2", img, "1M")
        assert pyqemu_img.info(img) == qemu_img.info(img)

Other test directories reuse these fixtures by loading this file (see tests/cli/conftest.py).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest


@dataclasses.dataclass
class Result:
    """Outcome of one tool invocation."""

    rc: int
    out: str
    err: str

    def ok(self) -> Result:
        """Assert success (rc 0) and return self."""
        assert self.rc == 0, f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        return self


def _result(proc: subprocess.CompletedProcess[bytes]) -> Result:
    """Decode without newline translation, so a progress "\\r" stays a "\\r"."""
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                  proc.stderr.decode("utf-8", "replace"))


def _opt_args(fmt: str | None, force_share: bool) -> list[str]:
    args: list[str] = []
    if fmt is not None:
        args += ["-f", fmt]
    if force_share:
        args.append("-U")
    return args


class ImgTool(abc.ABC):
    """Common API of qemu-img and pyqemu-img; subclasses define :meth:`run`."""

    name = "img"

    @abc.abstractmethod
    def run(self, *args: str) -> Result:
        """Run the tool with ``args`` (subcommand first)."""

    # ---- conveniences (all take the same arguments for both tools) -------------------
    def create(self, fmt: str, filename: str, size: str | int | None = None,
               *extra: str, **opts: str | int) -> Result:
        """``create -f fmt [-o k=v,...] [extra...] filename [size]``; asserts success."""
        args = ["create", "-q", "-f", fmt]
        if opts:
            args += ["-o", ",".join(f"{k}={v}" for k, v in opts.items())]
        args += list(extra)
        args.append(filename)
        if size is not None:
            args.append(str(size))
        return self.run(*args).ok()

    def info(self, filename: str, fmt: str | None = None, *, backing_chain: bool = False,
             force_share: bool = False) -> Any:
        """``info --output=json`` parsed (a list with ``backing_chain``)."""
        args = ["info", "--output=json", *_opt_args(fmt, force_share)]
        if backing_chain:
            args.append("--backing-chain")
        return json.loads(self.run(*args, filename).ok().out)

    def check(self, filename: str, fmt: str | None = None, *repair: str,
              force_share: bool = False) -> tuple[int, Any]:
        """``check --output=json``: (exit code, parsed JSON or None if no JSON printed)."""
        res = self.run("check", "--output=json", *_opt_args(fmt, force_share), *repair,
                       filename)
        try:
            data = json.loads(res.out) if res.out.strip() else None
        except json.JSONDecodeError:
            data = None
        return res.rc, data

    def map(self, filename: str, fmt: str | None = None, *extra: str,
            force_share: bool = False) -> Any:
        """``map --output=json`` parsed."""
        res = self.run("map", "--output=json", *_opt_args(fmt, force_share), *extra, filename)
        return json.loads(res.ok().out)

    def compare(self, a: str, b: str, *extra: str) -> Result:
        """``compare`` (exit code 0 identical, 1 different, 2 error)."""
        return self.run("compare", *extra, a, b)


class QemuImg(ImgTool):
    """The real qemu-img."""

    name = "qemu-img"

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, *args: str) -> Result:
        proc = subprocess.run([self.path, *args], capture_output=True,
                              timeout=120, stdin=subprocess.DEVNULL, check=False)
        return _result(proc)


class PyqemuImg(ImgTool):
    """pyqemu-img, run in this process (``run``) or as a subprocess (``subprocess``)."""

    name = "pyqemu-img"

    def run(self, *args: str) -> Result:
        from pyqemu.cli.img import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(args))
            except SystemExit as exc:  # main should not raise it, but keep the count honest
                rc = exc.code if isinstance(exc.code, int) else 1
        return Result(rc, out.getvalue(), err.getvalue())

    def subprocess(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """Run ``python -m pyqemu.cli.img`` in a fresh process (exit codes, tracebacks)."""
        full_env = dict(os.environ)
        full_env.pop("PYQEMU_DEBUG", None)
        if env:
            full_env.update(env)
        proc = subprocess.run([sys.executable, "-m", "pyqemu.cli.img", *args],
                              capture_output=True, timeout=120, env=full_env,
                              stdin=subprocess.DEVNULL, check=False)
        return _result(proc)


class QemuIo:
    """The real qemu-io: ``run(img, "write -P 0xab 0 4k", "read 0 1k", fmt="raw")``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, filename: str, *cmds: str, fmt: str | None = None,
            force_share: bool = False) -> Result:
        args = [self.path]
        if fmt is not None:
            args += ["-f", fmt]
        if force_share:
            args.append("-U")
        for c in cmds:
            args += ["-c", c]
        args.append(filename)
        proc = subprocess.run(args, capture_output=True, timeout=120,
                              stdin=subprocess.DEVNULL, check=False)
        return _result(proc)

    def write(self, filename: str, offset: int, length: int, pattern: int = 0xAB,
              fmt: str | None = None) -> Result:
        """``write -P pattern offset length``; asserts success (qemu-io prints errors
        on stdout and may exit 0, so its output is checked too)."""
        res = self.run(filename, f"write -P {pattern:#x} {offset} {length}", fmt=fmt).ok()
        assert "error" not in res.out.lower() and "failed" not in res.out.lower(), res.out
        return res

    def verify(self, filename: str, offset: int, length: int, pattern: int,
               fmt: str | None = None) -> bool:
        """True if ``read -P pattern offset length`` finds the pattern everywhere."""
        res = self.run(filename, f"read -P {pattern:#x} {offset} {length}", fmt=fmt)
        return res.rc == 0 and "Pattern verification failed" not in res.out \
            and "error" not in res.out.lower()


@pytest.fixture(scope="session")
def qemu_img() -> QemuImg:
    """Debian's qemu-img, the oracle; skips the test when it is not installed."""
    path = shutil.which("qemu-img")
    if path is None:
        pytest.skip("qemu-img not installed (scripts/setup.sh installs qemu-utils)")
    return QemuImg(path)


@pytest.fixture(scope="session")
def qemu_io() -> QemuIo:
    """Debian's qemu-io; skips the test when it is not installed."""
    path = shutil.which("qemu-io")
    if path is None:
        pytest.skip("qemu-io not installed (scripts/setup.sh installs qemu-utils)")
    return QemuIo(path)


@pytest.fixture(scope="session")
def pyqemu_img() -> PyqemuImg:
    """pyqemu-img with the same API as ``qemu_img``."""
    return PyqemuImg()


def registered_formats() -> list[str]:
    """Format names currently in pyqemu's registry (formats still being written are absent)."""
    from pyqemu.block import FORMATS

    return sorted(FORMATS)


def require_format(fmt: str) -> None:
    """Skip unless pyqemu has format ``fmt`` registered."""
    try:
        from pyqemu.block import FORMATS
    except ImportError as exc:  # pragma: no cover - block layer broken
        pytest.skip(f"pyqemu.block not importable: {exc}")
    if fmt not in FORMATS:
        pytest.skip(f"format {fmt} not registered in pyqemu yet")
