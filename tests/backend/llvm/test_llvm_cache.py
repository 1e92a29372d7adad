"""The llvm backend's on-disk object cache (runtime.ObjectCache) and lazy llvmlite."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llvmlite", reason="llvmlite is not installed")

from pyqemu.backend.llvm import runtime as rt

IR = """
define i64 @cache_probe_{n}(i64 %x) {{
  %r = mul i64 %x, {n}
  ret i64 %r
}}
"""


def _fresh_jit(monkeypatch: pytest.MonkeyPatch, root: Path) -> rt._JIT:
    monkeypatch.setenv("PYQEMU_LLVM_CACHE", str(root))
    return rt._JIT()


def test_second_engine_loads_the_object_from_disk(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    text = IR.format(n=7)
    j1 = _fresh_jit(monkeypatch, tmp_path)
    (a1,) = j1.compile(text, ["cache_probe_7"])
    assert ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(a1)(6) == 42
    files = list(tmp_path.glob("*.o"))
    assert len(files) == 1
    j2 = _fresh_jit(monkeypatch, tmp_path)

    def no_parse(*_a: object) -> None:
        raise AssertionError("a cached module was compiled again")

    monkeypatch.setattr(j2.llvm, "parse_assembly", no_parse)
    (a2,) = j2.compile(text, ["cache_probe_7"])
    assert ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(a2)(-3) == -21


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_entry_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 damage: str) -> None:
    text = IR.format(n=9)
    _fresh_jit(monkeypatch, tmp_path).compile(text, ["cache_probe_9"])
    (f,) = tmp_path.glob("*.o")
    data = f.read_bytes()
    f.write_bytes({"truncate": data[:len(data) // 2], "empty": b"",
                   "flip": data[:40] + bytes([data[40] ^ 0xFF]) + data[41:],
                   "garbage": os.urandom(len(data))}[damage])
    j = _fresh_jit(monkeypatch, tmp_path)
    (a,) = j.compile(text, ["cache_probe_9"])  # compiled again, entry rewritten
    assert ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(a)(5) == 45
    assert j.cache is not None and j.cache.get(text) is not None


def test_cache_off_and_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYQEMU_LLVM_CACHE", "0")
    j = rt._JIT()
    assert j.cache is None
    (a,) = j.compile(IR.format(n=11), ["cache_probe_11"])
    assert ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(a)(2) == 22
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    j2 = _fresh_jit(monkeypatch, blocker / "cache")  # cannot be created: no cache
    assert j2.cache is None
    (a2,) = j2.compile(IR.format(n=13), ["cache_probe_13"])
    assert ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(a2)(2) == 26


def test_short_run_never_imports_llvmlite(tmp_path: Path) -> None:
    """Selecting the llvm backend costs nothing until a block turns hot."""
    code = (
        "import sys\n"
        "from pyqemu.backend.base import get_backend\n"
        "b = get_backend('llvm')\n"
        "print('llvmlite.binding' in sys.modules, 'llvmlite.ir' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.split() == ["False", "False"]


def test_cache_is_pruned_oldest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = rt.ObjectCache(tmp_path, "salt")
    for k in range(6):
        cache.put(f"module {k}", bytes(100_000))
        os.utime(cache._path(f"module {k}"), (1000 + k, 1000 + k))
    cache.prune(350_000)
    kept = [k for k in range(6) if cache.get(f"module {k}") is not None]
    assert kept == [3, 4, 5]
    monkeypatch.setenv("PYQEMU_LLVM_CACHE_MAX", "1")  # MiB: opening prunes to fit
    monkeypatch.setenv("PYQEMU_LLVM_CACHE", str(tmp_path))
    for k in range(20):
        cache.put(f"big {k}", bytes(100_000))
    assert rt.ObjectCache.default("salt") is not None
    assert sum(f.stat().st_size for f in tmp_path.glob("*.o")) <= 1 << 20
