"""Start-up cost of pyqemu-img check/map/info: these subcommands are dominated by it (qemu-img
runs them in ~5 ms), so their import path must stay free of the heavy standard modules."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import require_tool

#: modules that cost milliseconds each to import (dataclasses alone pulls in inspect, ast,
#: dis, tokenize, re, enum, typing) and that these paths do not need. (collections is
#: allowed: the array module, used by the vdi/vmdk/vpc tables, imports collections.abc.)
HEAVY = ("dataclasses", "typing", "re", "enum", "inspect", "ast", "uuid", "contextlib",
         "zstandard", "capstone", "json")

PROBE = r"""
import sys
before = set(sys.modules)
sys.argv = ["pyqemu-img", *sys.argv[1:]]
from pyqemu.cli.img import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
print("\n" + " ".join(sorted(set(sys.modules) - before)), file=sys.stderr)
"""


@pytest.mark.parametrize("fmt", ["qcow2", "raw", "vdi", "vmdk", "vpc"])
@pytest.mark.parametrize("cmd", ["check", "map", "info"])
def test_no_heavy_imports(tmp_path: Any, cmd: str, fmt: str) -> None:
    qemu_img = require_tool("qemu-img")
    img = str(tmp_path / f"a.{fmt}")
    subprocess.run([qemu_img, "create", "-q", "-f", fmt, img, "4M"], check=True)
    proc = subprocess.run([sys.executable, "-I", "-c", PROBE, cmd, "-f", fmt, img],
                          capture_output=True, text=True, check=False, timeout=60)
    loaded = proc.stderr.strip().splitlines()[-1].split()
    assert proc.returncode in (0, 63), proc.stderr  # 63: raw/vpc have no check
    allowed = ("re", "enum") if fmt == "vmdk" else ()  # its descriptor parser is a regex
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY and
                   m.split(".")[0] not in allowed)
    assert not heavy, f"pyqemu-img {cmd} ({fmt}) imported {heavy}"
