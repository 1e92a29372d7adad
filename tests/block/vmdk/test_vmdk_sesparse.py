"""vmdk seSparse extents (ESXi): QEMU 7.2 reads them (read-only); images built here by
hand from the layout QEMU checks, then read by qemu-img and by pyqemu."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from vmdk_helpers import merged_map, open_vmdk, qemu_map

from pyqemu.block.errors import ImageFormatError

GRAIN = 4096
GT_SECTORS = 64  # 4096 entries of 8 bytes
GRAINS_AT = 200  # sector of grain index 0
ALLOC, ZERO, UNMAPPED = 0x3 << 60, 0x2 << 60, 0x1 << 60


def _gte(index: int) -> int:
    return ALLOC | ((index & 0xFFF) << 48) | (index >> 12)


def _make(tmp_path: Path, *, const: dict[int, int] | None = None, replay: int = 0,
          gde_extra: int | None = None) -> tuple[Path, dict[int, bytes]]:
    """seSparse image of 40 MiB: returns (descriptor path, {guest offset: 4 KiB grain})."""
    capacity = 40 * 2048  # sectors: three grain tables' worth, the third unallocated
    fields = [0xCAFEBABE, 0x0000000200000001, capacity, 8, 64, 0, 0, 0, 0, 0,
              1, 1, 2, 1, 3, 1, 4, 1, 8, 2 * GT_SECTORS, 150, 1, 160, 1, GRAINS_AT, 0]
    for i, v in (const or {}).items():
        fields[i] = v
    img = bytearray(GRAINS_AT * 512)
    struct.pack_into("<26Q", img, 0, *fields)
    struct.pack_into("<4Q", img, 512, 0xCAFECAFE, 0, 0, replay)
    struct.pack_into("<Q", img, 4 * 512, 0x1000000000000000 | 0)
    struct.pack_into("<Q", img, 4 * 512 + 8, 0x1000000000000000 | 1)
    if gde_extra is not None:
        struct.pack_into("<Q", img, 4 * 512 + 16, gde_extra)
    grains: dict[int, tuple[int, bytes]] = {}

    def put(gt: int, idx: int, value: int, data: bytes | None = None,
            gindex: int | None = None) -> None:
        struct.pack_into("<Q", img, (8 + gt * GT_SECTORS) * 512 + 8 * idx, value)
        if data is not None and gindex is not None:
            grains[(gt * 4096 + idx) * GRAIN] = (gindex, data)

    put(0, 0, _gte(0), b"\x11" * 1000 + b"\x12" * 3096, 0)
    put(0, 1, _gte(1), bytes(range(256)) * 16, 1)
    put(0, 5, ZERO)
    put(0, 6, UNMAPPED)
    put(0, 4095, _gte(2), b"\x33" * GRAIN, 2)
    put(1, 3, _gte(5000), b"\x44" * GRAIN, 5000)
    for gindex, data in grains.values():
        at = (GRAINS_AT + gindex * 8) * 512
        if len(img) < at + GRAIN:
            img.extend(bytes(at + GRAIN - len(img)))
        img[at:at + GRAIN] = data
    ext = tmp_path / "se-sesparse.vmdk"
    ext.write_bytes(bytes(img))
    desc = tmp_path / "se.vmdk"
    desc.write_text('# Disk DescriptorFile\nversion=1\nCID=abcdef01\nparentCID=ffffffff\n'
                    f'createType="seSparse"\n\n# Extent description\n'
                    f'RW {capacity} SESPARSE "se-sesparse.vmdk"\n')
    return desc, {off: data for off, (_, data) in grains.items()}


def test_read_matches_qemu(tmp_path, qemu_img):
    desc, grains = _make(tmp_path)
    raw = tmp_path / "o.raw"
    qemu_img.run("convert", "-f", "vmdk", "-O", "raw", str(desc), str(raw)).ok()
    want = raw.read_bytes()
    for off, data in grains.items():  # the oracle found our hand-made grains
        assert want[off:off + GRAIN] == data
    with open_vmdk(str(desc)) as im:
        assert im.virtual_size == len(want)
        assert im.read(0, im.virtual_size) == want
        assert im.read(1000, 5000) == want[1000:6000]
        info = qemu_img.info(str(desc), "vmdk")
        assert im.info_specific() == info["format-specific"]
        assert im.cluster_size == info.get("cluster-size")
        assert merged_map(im) == qemu_map(qemu_img, str(desc), "vmdk")
        assert im.check().corruptions == 0
    assert qemu_img.check(str(desc), "vmdk")[0] == 0


def test_read_write_open_refused_like_qemu(tmp_path, qemu_io):
    desc, _ = _make(tmp_path)
    res = qemu_io.run(str(desc), "read 0 512", fmt="vmdk")
    with pytest.raises(ImageFormatError) as exc, open_vmdk(str(desc), readonly=False):
        pass
    assert str(exc.value) in res.out + res.err


@pytest.mark.parametrize("case,kwargs", [
    ("magic", {"const": {0: 0xCAFEBABF}}),
    ("version", {"const": {1: 0x0000000300000001}}),
    ("grain-size", {"const": {3: 16}}),
    ("gt-size", {"const": {4: 32}}),
    ("flags", {"const": {5: 1}}),
    ("reserved", {"const": {7: 5}}),
    ("volatile-magic", {"const": {10: 3}}),
    ("dirty", {"replay": 1}),
])
def test_bad_headers_like_qemu(tmp_path, qemu_img, case, kwargs):
    desc, _ = _make(tmp_path, **kwargs)
    res = qemu_img.run("info", "-f", "vmdk", str(desc))
    assert res.rc != 0
    with pytest.raises(ImageFormatError) as exc, open_vmdk(str(desc)):
        pass
    assert str(exc.value) in res.err


def test_bad_directory_entry_fails_check_like_qemu(tmp_path, qemu_img, capsys):
    desc, _ = _make(tmp_path, gde_extra=0x2000000000000007)
    res = qemu_img.run("check", "-f", "vmdk", str(desc))
    with open_vmdk(str(desc)) as im:
        capsys.readouterr()
        with pytest.raises(ImageFormatError):
            im.check()
        printed = capsys.readouterr().err.splitlines()
    assert res.rc != 0
    assert printed == [ln for ln in res.err.splitlines() if ln.startswith("ERROR")]
