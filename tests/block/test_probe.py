"""Format probing agrees with qemu-img's guess for every format and odd files."""

from __future__ import annotations

import pytest

from pyqemu.block import FORMATS, probe_format

FORMATS_ALL = ["raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc"]


@pytest.mark.parametrize("fmt", FORMATS_ALL)
@pytest.mark.parametrize("opts", [{}, {"subformat": "x"}])
def test_probe_images_made_by_qemu(fmt, opts, tmp_path, qemu_img) -> None:
    if fmt not in FORMATS:
        pytest.skip(f"{fmt} not registered yet")
    sub = {"vmdk": "streamOptimized", "vpc": "fixed", "vhdx": "dynamic"}.get(fmt)
    if opts and sub is None:
        pytest.skip("no subformat variant")
    path = str(tmp_path / f"a.{fmt}")
    extra = {"subformat": sub} if opts else {}
    qemu_img.create(fmt, path, "8M", **extra)
    # (a fixed VHD has its footer only at the end: QEMU, and so we, probe it as raw)
    assert probe_format(path) == qemu_img.info(path)["format"]


@pytest.mark.parametrize("content", [b"", b"\0" * 4096, b"QFI", b"QFI\xfb",
                                     b"conectix" + b"\0" * 600, b"KDMV" + b"\xff" * 700,
                                     b"vhdxfile" + b"\0" * 100, b"# Disk DescriptorFile\n",
                                     bytes(range(256)) * 8])
def test_probe_odd_files_like_qemu(content, tmp_path, monkeypatch, qemu_img,
                                   pyqemu_img) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "odd.img"
    path.write_bytes(content)
    theirs = qemu_img.run("info", "--output=json", str(path))
    if theirs.rc != 0:
        # qemu-img probed a format and then failed to open it: the same guess gives the
        # same format's error
        ours = pyqemu_img.run("info", "--output=json", str(path))
        assert ours.rc == theirs.rc
        assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err
        return
    import json

    assert probe_format(str(path)) == json.loads(theirs.out)["format"]


def test_registry_lists_the_format_modules_that_exist() -> None:
    """Every format module present registers its Image class; a module that fails to
    import is recorded (not hidden) so a broken format is noticed."""
    import importlib.util

    from pyqemu.block import FORMAT_MODULES

    present = [m for m in FORMAT_MODULES
               if importlib.util.find_spec(f"pyqemu.block.{m}") is not None]
    assert FORMATS.errors == {}
    assert sorted(present) == sorted(FORMATS)
    for name, cls in FORMATS.items():
        assert cls.format_name == name


def _probe_all_formats(header: bytes) -> str:
    """Probing as before the prefilters: every format's own probe, highest score wins."""
    best, best_score = "raw", 0
    for name in FORMATS:  # iterating imports every format module
        score = FORMATS[name].probe(header, "x")
        if score > best_score:
            best, best_score = name, score
    return best


@pytest.mark.parametrize("fmt", FORMATS_ALL)
def test_prefilters_agree_with_full_probe(fmt, tmp_path, qemu_img) -> None:
    """probe_header imports only formats whose cheap prefilter passes; on headers of
    every format (and their truncations/mutations) it gives the full probe's answer."""
    import random

    from pyqemu.block import PROBE_BUF_SIZE, probe_header

    path = tmp_path / f"a.{fmt}"
    qemu_img.create(fmt, str(path), "8M")
    with open(path, "rb") as fh:
        header = fh.read(PROBE_BUF_SIZE)
    rng = random.Random(fmt)
    samples = [header, header[:3], header[:8], header[:0x43], header[:0x44]]
    for _ in range(200):
        h = bytearray(header)
        for _ in range(rng.randrange(1, 4)):
            h[rng.randrange(len(h) if rng.random() < 0.5 else 0x48)] = rng.randrange(256)
        samples.append(bytes(h))
    samples += [b"# Disk DescriptorFile\nversion=1\n", b"#c\n  \r\nversion=3\r\n",
                b"version=4\n", b"  x version=1\n"]
    for h in samples:
        assert probe_header(h, "x") == _probe_all_formats(h), h[:80]


def test_info_imports_only_the_probed_format(tmp_path, qemu_img) -> None:
    """Start-up cost: ``info`` on a qcow2 image imports no other format module, and
    none of the heavy optional libraries."""
    import subprocess
    import sys

    img = str(tmp_path / "x.qcow2")
    qemu_img.create("qcow2", img, "1M")
    code = ("import sys; from pyqemu.cli.img import main; rc = main(['info', sys.argv[1]]); "
            "print(sorted(m for m in sys.modules if m.startswith(('pyqemu.block.', "
            "'zstandard', 'capstone', 'hypothesis', 'unicorn', 'llvmlite', 'ctypes')))); "
            "sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, img], capture_output=True, text=True,
                         check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    mods = res.stdout.strip().splitlines()[-1]
    for bad in ("vmdk", "vdi", "vhdx", "vpc", "zstandard", "capstone", "hypothesis",
                "unicorn", "llvmlite", "'ctypes"):
        assert bad not in mods, mods
    assert "pyqemu.block.qcow2" in mods
