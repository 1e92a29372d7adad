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
