"""``--image-opts`` on every subcommand that has it, with the option keys QEMU 7.2 accepts
for a host file under a format driver (file.*, cache.*, read-only, node-name, discard,
detect-zeroes, qcow2's runtime options) and some it refuses: the same command with
qemu-img and pyqemu-img on copies of one image gives the same status and output, and
leaves the image in the same state."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import require_tool

# IMG: the option string's image; OUT: an output file; OTHER: a second qcow2 image
COMMANDS = {
    "info": ["info", "--image-opts", "OPTS"],
    "info-json": ["info", "--output=json", "--image-opts", "OPTS"],
    "check": ["check", "--image-opts", "OPTS"],
    "check-r": ["check", "-r", "all", "--image-opts", "OPTS"],
    "map": ["map", "--output=json", "--image-opts", "OPTS"],
    "compare": ["compare", "--image-opts", "OPTS", "driver=qcow2,file.filename=OTHER"],
    "convert": ["convert", "-O", "raw", "--image-opts", "OPTS", "OUT"],
    "measure": ["measure", "-O", "qcow2", "--image-opts", "OPTS"],
    "amend": ["amend", "-o", "lazy_refcounts=on", "--image-opts", "OPTS"],
    "resize": ["resize", "--image-opts", "OPTS", "2M"],
    "snapshot-l": ["snapshot", "-l", "--image-opts", "OPTS"],
    "snapshot-c": ["snapshot", "-c", "s1", "--image-opts", "OPTS"],
    "bitmap": ["bitmap", "--add", "--image-opts", "OPTS", "b1"],
    "rebase": ["rebase", "-u", "-b", "", "--image-opts", "OPTS"],
    "commit": ["commit", "--image-opts", "OPTS"],
    "dd": ["dd", "--image-opts", "if=OPTS", "of=OUT", "bs=64k", "count=2"],
}

OPTIONS = [
    "file.locking=off", "file.locking=auto", "file.locking=bad", "file.aio=threads",
    "file.aio=native", "file.pr-manager=p", "file.bogus=1", "read-only=on",
    "read-only=bad", "node-name=n1", "node-name=9x", "discard=unmap",
    "detect-zeroes=unmap", "cache.no-flush=on", "cache.writeback=on",
    "l2-cache-size=1M,refcount-cache-size=64k", "lazy-refcounts=on",
    "overlap-check=none", "overlap-check=some", "encrypt.format=luks", "bogus=1",
]


def _run(tool: str, args: list[str], cwd: str) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "pyqemu.cli.img", *args] if tool == "pyqemu-img" \
        else ["qemu-img", *args]
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60,
                       cwd=cwd, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr.replace("pyqemu-img:", "qemu-img:")


def _state(path: str) -> dict[str, Any]:
    p = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                       capture_output=True, text=True, check=True)
    data = json.loads(p.stdout)
    data.pop("actual-size", None)
    data.pop("filename", None)
    data.pop("full-backing-filename", None)
    for snap in data.get("snapshots", []):
        for key in ("date-sec", "date-nsec"):
            snap.pop(key, None)
    return data


@pytest.fixture(scope="module")
def images(tmp_path_factory: Any) -> str:
    require_tool("qemu-img")
    d = tmp_path_factory.mktemp("imgopts")
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(d / "base.raw"), "1M"],
                   check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
                    str(d / "img.qcow2")], check=True, cwd=d)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "other.qcow2"),
                    "1M"], check=True)
    return str(d)


_NAMES = sorted(COMMANDS)
#: the default suite runs each option with two commands (every command is covered);
#: the whole matrix is slow
SAMPLE = [(_NAMES[(i + k) % len(_NAMES)], opt) for i, opt in enumerate(OPTIONS)
          for k in (0, 7)]
MATRIX = [(c, o) for c in _NAMES for o in OPTIONS if (c, o) not in SAMPLE]


@pytest.mark.parametrize(("command", "option"), SAMPLE)
def test_image_opts(tmp_path: Any, images: str, command: str, option: str) -> None:
    _compare(tmp_path, images, command, option)


@pytest.mark.slow
@pytest.mark.parametrize(("command", "option"), MATRIX)
def test_image_opts_matrix(tmp_path: Any, images: str, command: str, option: str) -> None:
    _compare(tmp_path, images, command, option)


def _compare(tmp_path: Any, images: str, command: str, option: str) -> None:
    out = {}
    for tool in ("qemu-img", "pyqemu-img"):
        work = tmp_path / tool
        work.mkdir()
        for name in ("base.raw", "img.qcow2", "other.qcow2"):
            shutil.copy(f"{images}/{name}", work / name)
        opts = f"driver=qcow2,file.filename=img.qcow2,{option}"
        args = [a.replace("OPTS", opts).replace("OTHER", "other.qcow2")
                .replace("OUT", "out.img") for a in COMMANDS[command]]
        rc, so, se = _run(tool, args, str(work))
        so, se = so.replace(str(work), "DIR"), se.replace(str(work), "DIR")
        out[tool] = (rc, so, se, _state(str(work / "img.qcow2")))
    assert out["pyqemu-img"][:3] == out["qemu-img"][:3]
    assert out["pyqemu-img"][3] == out["qemu-img"][3]
