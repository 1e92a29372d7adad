"""vhdx log replay: pyqemu and the real qemu-img replay the same logs to the same bytes.

Both directions: QEMU leaves a dirty log when blkdebug fails the BAT update after the log
entry is written (pyqemu replays it); pyqemu writes dirty logs with its own log writer
(qemu-img check -r all replays them).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys

import pytest
from vhdx_helpers import MiB, file_digest, open_vhdx, qemu_error, qemu_raw

from pyqemu.block.errors import ImageFormatError
from pyqemu.block.vhdx import VhdxImage
from pyqemu.block.vhdx import log as vlog
from pyqemu.block.vhdx.format import LOG_SECTOR_SIZE, LogEntryHeader, new_guid, update_checksum

SIZE = 8 * MiB
BAT_OFFSET = 2 * MiB  # with the default 1 MiB log


def _sector(fill: int, tag: int = 0) -> bytes:
    sec = bytearray([fill]) * LOG_SECTOR_SIZE
    sec[0:8] = struct.pack("<Q", tag)  # leading bytes live in the descriptor
    sec[-4:] = struct.pack("<I", tag ^ 0xA5A5A5A5)  # trailing bytes too
    return bytes(sec)


def _pyqemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyqemu.cli.img", *args], check=False,
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _replay_both(tmp_path, qemu_img, dirty: str) -> None:
    """Replay ``dirty`` with pyqemu and (on a copy) with qemu-img; compare everything."""
    ours, theirs = str(tmp_path / "ours.vhdx"), str(tmp_path / "theirs.vhdx")
    shutil.copy(dirty, ours)
    shutil.copy(dirty, theirs)
    # read-only: both refuse, with the same message, and nothing is written
    res = qemu_img.run("info", "-f", "vhdx", theirs)
    assert res.rc != 0
    before = file_digest(ours)
    with pytest.raises(ImageFormatError) as exc, open_vhdx(ours):
        pass
    assert str(exc.value).replace(ours, "F") == qemu_error(res.err).replace(theirs, "F")
    # QEMU's hint lines follow the message
    hint = exc.value.hint.replace(ours, "F")  # type: ignore[attr-defined]
    assert res.err.replace(theirs, "F").rstrip("\n").endswith(hint)
    assert file_digest(ours) == before
    # the command line prints the message and then the hint, as qemu-img does
    for args in (["info", "-f", "vhdx"], ["check"], ["map", "--output=json"]):
        q = qemu_img.run(*args, theirs)
        p = _pyqemu_img(*args, ours)
        assert (p.returncode, p.stdout) == (q.rc, q.out)
        assert (p.stderr.replace("pyqemu-img: ", "qemu-img: ").replace(ours, "F")
                == q.err.replace(theirs, "F"))
    assert file_digest(ours) == before
    # read-write: both replay
    with open_vhdx(ours, readonly=False) as im:
        assert im.log_replayed_on_open
        chk = im.check()
        data = im.read(0, im.virtual_size)
    rc, qchk = qemu_img.check(theirs, "vhdx", "-r", "all")
    assert rc == 0, qchk
    assert qchk.get("corruptions-fixed") == chk.corruptions_fixed == 1
    assert chk.corruptions == 0
    with open(ours, "rb") as fo, open(theirs, "rb") as ft:
        ob, tb = fo.read(), ft.read()
    assert len(ob) == len(tb)
    assert ob[MiB:] == tb[MiB:]  # log, BAT, metadata and payload: identical
    assert qemu_raw(qemu_img, theirs, str(tmp_path)) == data
    # the log is empty afterwards: both open read-only, qemu-img check is clean
    assert qemu_img.check(ours, "vhdx")[0] == 0
    with open_vhdx(theirs) as im:
        assert not im.log_replayed_on_open
        assert im.read(0, im.virtual_size) == data


@pytest.mark.parametrize("offset,length", [(1000, 3000), (5 * MiB - 7, 14)])
def test_qemu_dirty_log_replayed(tmp_path, qemu_img, qemu_io, offset, length):
    """A dirty log written by QEMU itself (its BAT update made to fail after the log
    entry is stable) is replayed by pyqemu to the same bytes as by qemu-img."""
    img = str(tmp_path / "q.vhdx")
    qemu_img.create("vhdx", img, SIZE, block_size="1M")
    qemu_io.write(img, 3 * MiB, 5000, 0x5C, fmt="vhdx")  # an earlier, clean allocation
    cfg = tmp_path / "blkdebug.cfg"
    bat_sector = (BAT_OFFSET + (offset // MiB) * 8) // 512
    cfg.write_text('[inject-error]\nevent = "pwritev"\niotype = "write"\n'
                   f'sector = "{bat_sector}"\nerrno = "5"\nonce = "on"\n')
    spec = f"driver=vhdx,file.driver=blkdebug,file.config={cfg},file.image.filename={img}"
    res = subprocess.run([qemu_io.path, "--image-opts", "-c",
                          f"write -P 0x33 {offset} {length}", spec], check=False,
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert "Input/output error" in res.stdout + res.stderr
    assert qemu_img.run("info", img).rc != 0  # dirty now
    _replay_both(tmp_path, qemu_img, img)
    with open_vhdx(str(tmp_path / "ours.vhdx")) as im:
        # the write stopped at the failed BAT update: only its first block got the data
        first = min(length, MiB - offset % MiB)
        assert im.read(offset, first) == b"\x33" * first
        assert im.read(3 * MiB, 5000) == b"\x5c" * 5000


def _base(tmp_path, log_size: str = "1M") -> str:
    img = str(tmp_path / "base.vhdx")
    VhdxImage.create(img, SIZE, {"block_size": MiB, "log_size": int(log_size[:-1]) * MiB})
    with open_vhdx(img, readonly=False) as im:
        im.write(0, b"\x11" * (2 * MiB))  # blocks 0 and 1 allocated
    return img


def _payload(im: VhdxImage, block: int) -> int:
    return im.bat[block] & ~0xFFFFF


def _scenario_data_and_zero(im: VhdxImage) -> None:
    b0 = _payload(im, 0)
    im.write_log_entry([(b0 + 8192, _sector(0x5A, 1))], [(b0 + 16384, 3 * LOG_SECTOR_SIZE)])


def _scenario_allocate_and_grow(im: VhdxImage) -> None:
    """The entry allocates block 3 past end of file and grows the file (the last file
    offset is not 1 MiB aligned, the case where QEMU 7.2 resizes)."""
    eof = im.file.size()
    bat = bytearray(im.file.pread(BAT_OFFSET, LOG_SECTOR_SIZE))
    struct.pack_into("<Q", bat, 3 * 8, eof | 6)
    im.write_log_entry([(BAT_OFFSET, bytes(bat)), (eof + 4096, _sector(0x77, 2))],
                       last_file_offset=eof + MiB + 5)


def _scenario_multi_entry(im: VhdxImage) -> None:
    b1 = _payload(im, 1)
    im.write_log_entry([(b1, _sector(0x21, 3)), (b1 + 4096, _sector(0x22, 4))])
    im.write_log_entry([(b1 + 4096, _sector(0x23, 5))])  # later entry wins
    im.write_log_entry([], [(b1, 4096)])


def _scenario_wrap(im: VhdxImage) -> None:
    """Entries that run over the end of the ring back to its start."""
    ring = im.active_header.log_length
    im.log.read = im.log.write = im.log.tail = ring - 2 * LOG_SECTOR_SIZE
    b0 = _payload(im, 0)
    im.write_log_entry([(b0, _sector(0x31, 6)), (b0 + 4096, _sector(0x32, 7))])
    im.write_log_entry([(b0 + 8192, _sector(0x33, 8))])


def _scenario_stale_sequence(im: VhdxImage) -> None:
    """An older sequence elsewhere in the ring is not replayed, the newest one is."""
    b0 = _payload(im, 0)
    im.log.sequence = 50
    im.write_log_entry([(b0, _sector(0x41, 9))])
    im.log.read = im.log.write = im.log.tail = 100 * LOG_SECTOR_SIZE
    im.log.sequence = 20
    im.write_log_entry([(b0, _sector(0x42, 10))])
    im.write_log_entry([(b0 + 4096, _sector(0x43, 11))])


SCENARIOS = {
    "data-and-zero": _scenario_data_and_zero,
    "allocate-and-grow": _scenario_allocate_and_grow,
    "multi-entry": _scenario_multi_entry,
    "wrap": _scenario_wrap,
    "stale-sequence": _scenario_stale_sequence,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_our_dirty_log_replayed_by_qemu(tmp_path, qemu_img, name):
    """Dirty logs written by pyqemu's log writer: qemu-img check -r all and pyqemu's
    read-write open replay them to identical files."""
    img = _base(tmp_path)
    with open_vhdx(img, readonly=False) as im:
        SCENARIOS[name](im)
    _replay_both(tmp_path, qemu_img, img)


def _raw_entry_into_log(img: str, entry: bytes, *, fix_crc: bool = True) -> None:
    """Put a hand-made entry at the start of the ring and mark the log non-empty."""
    with open_vhdx(img, readonly=False) as im:
        guid = new_guid()
        im.update_headers(False, guid)
        buf = bytearray(entry.replace(b"GUIDGUIDGUIDGUID", guid))
        if fix_crc and buf:
            update_checksum(buf, 4)
        im.file.pwrite(im.log.offset, bytes(buf))


def _entry(**kw: object) -> bytes:
    args: dict[str, object] = {"sequence": 1, "log_guid": b"GUIDGUIDGUIDGUID", "tail": 0,
                               "flushed_file_offset": 0, "last_file_offset": 0,
                               "sectors": [(4 * MiB, _sector(0x99))]}
    args.update(kw)
    return vlog.build_entry(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("case,opens", [
    ("bad-descriptor", False),        # header valid, a descriptor is not: open fails
    ("flushed-offset-beyond-eof", False),
    ("data-sector-sequence", False),  # data sector's sequence differs from its descriptor
    ("misaligned-descriptor", False),
    ("bad-checksum", True),           # an entry with a wrong checksum is not valid
    ("many-descriptors", False),      # >126 descriptors: QEMU 7.2 cannot read them
    ("no-entries", True),             # log GUID set but nothing valid: nothing to replay
    ("wrong-guid", True),             # entries of another log GUID are ignored
])
def test_invalid_logs_as_qemu(tmp_path, qemu_img, case, opens):
    """Invalid logs: pyqemu opens (read-only and read-write) exactly when qemu-img does,
    and never with a traceback."""
    img = _base(tmp_path)
    if case == "bad-descriptor":
        buf = bytearray(_entry())
        buf[64:68] = b"bad!"
        _raw_entry_into_log(img, bytes(buf))
    elif case == "bad-checksum":
        buf = bytearray(_entry())
        buf[5000] ^= 0xFF
        _raw_entry_into_log(img, bytes(buf), fix_crc=False)
    elif case == "flushed-offset-beyond-eof":
        _raw_entry_into_log(img, _entry(flushed_file_offset=1 << 40))
    elif case == "data-sector-sequence":
        buf = bytearray(_entry())
        struct.pack_into("<I", buf, 4096 + 4, 7)  # sequence_high of the data sector
        _raw_entry_into_log(img, bytes(buf))
    elif case == "misaligned-descriptor":
        _raw_entry_into_log(img, _entry(sectors=[(4 * MiB + 512, _sector(1))]))
    elif case == "many-descriptors":
        _raw_entry_into_log(img, _entry(sectors=[(4 * MiB + i * 4096, _sector(i, i))
                                                 for i in range(127)]))
    elif case == "no-entries":
        _raw_entry_into_log(img, b"")
    elif case == "wrong-guid":
        _raw_entry_into_log(img, _entry(log_guid=new_guid()))
    for readonly in (True, False):
        mine, theirs = str(tmp_path / "m.vhdx"), str(tmp_path / "t.vhdx")
        shutil.copy(img, mine)
        shutil.copy(img, theirs)
        if readonly:
            res = qemu_img.run("info", "-f", "vhdx", theirs)
        else:
            res = qemu_img.run("check", "-f", "vhdx", "-r", "all", theirs)
        digest = file_digest(mine)
        try:
            with open_vhdx(mine, readonly=readonly) as im:
                data = im.read(0, im.virtual_size)
            ok = True
        except ImageFormatError:
            ok = False
        assert ok == opens == (res.rc == 0), (readonly, res)
        if readonly:
            assert file_digest(mine) == digest
        if ok:
            assert data == qemu_raw(qemu_img, theirs, str(tmp_path))


def test_write_with_nonempty_log_guid_fails_as_qemu(tmp_path, qemu_img, qemu_io):
    """A log GUID without valid entries: both open the image, and both refuse a write
    that needs a BAT update (QEMU journals only into an empty log)."""
    img = _base(tmp_path)
    _raw_entry_into_log(img, b"")
    mine, theirs = str(tmp_path / "m.vhdx"), str(tmp_path / "t.vhdx")
    shutil.copy(img, mine)
    shutil.copy(img, theirs)
    res = qemu_io.run(theirs, "write -P 0x66 5M 4k", fmt="vhdx")
    assert "Operation not supported" in res.out + res.err
    with open_vhdx(mine, readonly=False) as im:
        im.write(0, b"\x67" * 4096)  # block 0 is allocated: no BAT update, fine
        with pytest.raises(ImageFormatError):
            im.write(5 * MiB, b"\x66" * 4096)
    assert qemu_io.verify(theirs, 0, 4096, 0x11, fmt="vhdx")
    assert qemu_io.run(theirs, "write -P 0x67 0 4k", fmt="vhdx").rc == 0
    assert qemu_raw(qemu_img, theirs, str(tmp_path)) == qemu_raw(qemu_img, mine, str(tmp_path))


def test_entry_as_long_as_the_ring_terminates(tmp_path):
    """Every ring sector a plausible entry header as long as the whole ring, with a bad
    checksum: QEMU 7.2 searches such a log forever (its index comes back to where it
    started); pyqemu stops after one pass, finds no valid entry, and opens the image."""
    img = _base(tmp_path)
    with open_vhdx(img, readonly=False) as im:
        guid = new_guid()
        im.update_headers(False, guid)
        ring = im.active_header.log_length
        for pos in range(0, ring, LOG_SECTOR_SIZE):
            hdr = LogEntryHeader(entry_length=ring, sequence_number=5 + pos,
                                      log_guid=guid, checksum=1)
            im.file.pwrite(im.log.offset + pos, hdr.pack() + b"\x01" * (LOG_SECTOR_SIZE - 64))
    digest = file_digest(img)
    with open_vhdx(img) as im:
        assert not im.log_replayed_on_open
        assert im.read(0, 2 * MiB) == b"\x11" * (2 * MiB)
    assert file_digest(img) == digest
