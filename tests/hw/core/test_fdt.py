"""FDT builder/reader against the real dtc (Debian device-tree-compiler)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyqemu.hw.core.fdt import Fdt, FdtError
from tests.conftest import require_tool

# A virt-like tree, written as dts; the builder below constructs the same tree.
VIRT_DTS = """/dts-v1/;
/memreserve/ 0x48000000 0x100000;
/ {
\tinterrupt-parent = <0x8002>;
\t#size-cells = <0x02>;
\t#address-cells = <0x02>;
\tcompatible = "linux,dummy-virt";
\tchosen {
\t\tbootargs = "console=ttyAMA0 root=/dev/vda";
\t\tstdout-path = "/pl011@9000000";
\t\tlinux,initrd-start = <0x00 0x48000000>;
\t\tkaslr-seed = /bits/ 64 <0x123456789abcdef0>;
\t};
\tmemory@40000000 {
\t\treg = <0x00 0x40000000 0x00 0x8000000>;
\t\tdevice_type = "memory";
\t};
\tpl011@9000000 {
\t\tclock-names = "uartclk", "apb_pclk";
\t\tclocks = <0x8000 0x8000>;
\t\tinterrupts = <0x00 0x01 0x04>;
\t\treg = <0x00 0x9000000 0x00 0x1000>;
\t\tcompatible = "arm,pl011", "arm,primecell";
\t};
\tintc@8000000 {
\t\tphandle = <0x8002>;
\t\tinterrupt-controller;
\t\tmac = [52 54 00 12 34 56];
\t};
};
"""


def build_virt() -> Fdt:
    f = Fdt()
    f.add_reservation(0x48000000, 0x100000)
    r = f.root
    r.set_u32("interrupt-parent", 0x8002)
    r.set_u32("#size-cells", 2)
    r.set_u32("#address-cells", 2)
    r.set_string("compatible", "linux,dummy-virt")
    c = f.add_subnode("/chosen")
    c.set_string("bootargs", "console=ttyAMA0 root=/dev/vda")
    c.set_string("stdout-path", "/pl011@9000000")
    c.set_sized_cells("linux,initrd-start", (2, 0x48000000))
    c.set_u64("kaslr-seed", 0x123456789ABCDEF0)
    m = f.add_subnode("/memory@40000000")
    m.set_sized_cells("reg", (2, 0x40000000), (2, 0x8000000))
    m.set_string("device_type", "memory")
    u = f.add_subnode("/pl011@9000000")
    u.set_strings("clock-names", "uartclk", "apb_pclk")
    u.set_cells("clocks", 0x8000, 0x8000)
    u.set_cells("interrupts", 0, 1, 4)
    u.set_sized_cells("reg", (2, 0x9000000), (2, 0x1000))
    u.set_strings("compatible", "arm,pl011", "arm,primecell")
    g = f.add_subnode("/intc@8000000")
    assert f.set_phandle("/intc@8000000", 0x8002) == 0x8002
    g.set_empty("interrupt-controller")
    g.set_bytes("mac", bytes.fromhex("525400123456"))
    return f


def _dtc(args: list[str], data: bytes) -> bytes:
    dtc = require_tool("dtc")
    return subprocess.run([dtc, "-q", *args], input=data, capture_output=True,
                          check=True).stdout


def test_builder_matches_dtc_decompile(tmp_path: Path) -> None:
    blob = build_virt().to_dtb()
    ours = _dtc(["-I", "dtb", "-O", "dts"], blob)
    theirs = _dtc(["-I", "dtb", "-O", "dts"], _dtc(["-I", "dts", "-O", "dtb"], VIRT_DTS.encode()))
    assert ours == theirs


def test_builder_bytes_identical_to_dtc_compile() -> None:
    blob = build_virt().to_dtb()
    assert blob == _dtc(["-I", "dts", "-O", "dtb"], VIRT_DTS.encode())


def test_reader_parses_dtc_output_and_rewrites_it() -> None:
    blob = _dtc(["-I", "dts", "-O", "dtb"], VIRT_DTS.encode())
    f = Fdt.from_dtb(blob)
    assert f.reservations == [(0x48000000, 0x100000)]
    assert f.node("/pl011@9000000").get_strings("compatible") == ["arm,pl011", "arm,primecell"]
    assert f.node("/memory@40000000").get_cells("reg") == [0, 0x40000000, 0, 0x8000000]
    assert f.node("/intc@8000000").props["interrupt-controller"] == b""
    assert f.alloc_phandle() != 0x8002
    # patch the way a machine patches -dtb: /chosen bootargs
    f.node("/chosen").set_string("bootargs", "quiet")
    out = _dtc(["-I", "dtb", "-O", "dts"], f.to_dtb())
    assert b'bootargs = "quiet";' in out


def test_reader_handles_padding_and_nops() -> None:
    # dtc -p adds free space; -S pads the total size
    blob = _dtc(["-I", "dts", "-O", "dtb", "-p", "1024"], VIRT_DTS.encode())
    assert Fdt.from_dtb(blob).to_dtb() == build_virt().to_dtb()


@pytest.mark.parametrize("mutate", [
    lambda b: b[:20],                                        # truncated header
    lambda b: b"\0\0\0\0" + b[4:],                           # bad magic
    lambda b: b[:4] + (len(b) + 100).to_bytes(4, "big") + b[8:],   # totalsize too big
    lambda b: b[:8] + (0xFFFFFF00).to_bytes(4, "big") + b[12:],    # struct offset outside
    lambda b: b[:-60],                                       # truncated body
])
def test_reader_rejects_corrupt_blobs(mutate: object) -> None:
    blob = build_virt().to_dtb()
    with pytest.raises(FdtError):
        Fdt.from_dtb(mutate(blob))  # type: ignore[operator]


def test_reader_never_crashes_on_bitflips() -> None:
    blob = bytearray(build_virt().to_dtb())
    for i in range(0, len(blob), 3):
        b = bytearray(blob)
        b[i] ^= 0xA5
        try:
            Fdt.from_dtb(bytes(b))
        except FdtError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
       st.integers(0, 600))
def test_reader_random_corruption_only_raises_fdt_error(edits: list[tuple[int, int]],
                                                        cut: int) -> None:
    blob = bytearray(build_virt().to_dtb())
    for pos, val in edits:
        blob[pos % len(blob)] = val
    data = bytes(blob[:len(blob) - cut]) if cut < len(blob) else b""
    try:
        Fdt.from_dtb(data)
    except FdtError:
        pass
