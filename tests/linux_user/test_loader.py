"""The ELF loader against readelf's view of the same files, and the initial stack."""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyqemu.accel.tcg.interfaces import Prot
from pyqemu.linux_user.loader import (
    AT_ENTRY,
    AT_EXECFN,
    AT_PAGESZ,
    AT_PHDR,
    AT_PHNUM,
    AT_PLATFORM,
    AT_RANDOM,
    ElfError,
    load_program,
    parse_elf,
)
from pyqemu.linux_user.mmap import GuestAddressSpace
from tests.conftest import require_tool
from tests.linux_user.conftest import SYSROOT, guest_binary


@pytest.fixture
def mem() -> Iterator[GuestAddressSpace]:
    m = GuestAddressSpace(1 << 39)
    yield m
    m.close()


def readelf(path: Path) -> dict[str, object]:
    tool = require_tool("aarch64-linux-gnu-readelf")
    out = subprocess.run([tool, "-lhW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    entry = int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", out).group(1), 16)
    typ = re.search(r"Type:\s+(\w+)", out).group(1)
    interp = re.search(r"Requesting program interpreter: ([^\]]+)\]", out)
    loads = []
    for m in re.finditer(r"^\s+LOAD\s+(0x\w+) (0x\w+) 0x\w+ (0x\w+) (0x\w+) ([RWE ]{3})",
                         out, re.MULTILINE):
        off, va, fsz, msz = (int(m.group(i), 16) for i in range(1, 5))
        loads.append((off, va, fsz, msz, m.group(5)))
    return {"entry": entry, "type": typ, "interp": interp.group(1) if interp else None,
            "loads": loads}


@pytest.mark.parametrize("static,pie", [(True, False), (False, True)])
def test_segments_as_readelf_says(mem: GuestAddressSpace, static: bool, pie: bool) -> None:
    binary = guest_binary("hello.c", static=static)
    facts = readelf(binary)
    data = binary.read_bytes()
    img = parse_elf(str(binary), data)
    assert img.interp == facts["interp"]
    lp = load_program(mem, str(binary), [b"prog"], [b"A=1"], prefix=SYSROOT)
    bias = lp.exe.load_bias
    assert (bias != 0) == (facts["type"] == "DYN")
    assert lp.exe.entry == facts["entry"] + bias
    for off, va, fsz, msz, flags in facts["loads"]:  # type: ignore[union-attr]
        g = va + bias
        assert mem.read(g, fsz) == data[off:off + fsz]
        bss_end = min(msz, ((g + msz + 4095) & ~4095) - g)
        assert mem.read(g + fsz, bss_end - fsz) == bytes(bss_end - fsz)
        v = mem.find_vma(g)
        assert v is not None
        want = (Prot.READ if "R" in flags else 0) | (Prot.WRITE if "W" in flags else 0) \
            | (Prot.EXEC if "E" in flags else 0)
        assert v.prot & want == want
    if facts["interp"]:
        assert lp.interp is not None and lp.entry == lp.interp.entry
        ld = readelf(Path(SYSROOT) / str(facts["interp"]).lstrip("/"))
        assert lp.interp.entry == ld["entry"] + lp.interp.load_bias
    assert lp.brk >= lp.exe.end


def test_initial_stack_layout(mem: GuestAddressSpace) -> None:
    binary = guest_binary("hello.c")
    argv = [b"prog", b"arg one", b""]
    envp = [b"A=1", b"B=two"]
    lp = load_program(mem, str(binary), argv, envp, hwcap=0x1234, hwcap2=0x56,
                      random_bytes=bytes(range(16)))
    sp = lp.sp
    assert sp % 16 == 0
    argc = mem.read_u64(sp)
    assert argc == 3
    ptrs = [mem.read_u64(sp + 8 * (1 + i)) for i in range(argc + 1)]
    assert [mem.read_cstr(p) for p in ptrs[:-1]] == argv and ptrs[-1] == 0
    e = sp + 8 * (argc + 2)
    env = []
    while (p := mem.read_u64(e)):
        env.append(mem.read_cstr(p))
        e += 8
    assert env == envp
    aux = {}
    a = e + 8
    order = []
    while True:
        k, v = struct.unpack("<QQ", mem.read(a, 16))
        if k == 0:
            break
        aux[k] = v
        order.append(k)
        a += 16
    # QEMU 7.2's order (seen by tests/guest/aarch64/auxv.c under qemu-aarch64)
    assert order == [3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 25, 23, 31, 26, 15]
    assert aux[AT_PAGESZ] == 4096 and aux[16] == 0x1234 and aux[26] == 0x56
    assert mem.read(aux[AT_RANDOM], 16) == bytes(range(16))
    assert mem.read_cstr(aux[AT_PLATFORM]) == b"aarch64"
    assert mem.read_cstr(aux[AT_EXECFN]) == str(binary).encode()
    assert aux[AT_ENTRY] == lp.exe.entry
    assert aux[AT_PHNUM] == parse_elf(str(binary), binary.read_bytes()).e_phnum
    assert mem.read(aux[AT_PHDR], 4) == binary.read_bytes()[64:68]


@pytest.mark.parametrize("mutate,status", [
    (lambda b: b[:16], 1),
    (lambda b: b[:4] + b"\x01" + b[5:], 255),  # ELFCLASS32
    (lambda b: b[:18] + b"\x3e\x00" + b[20:], 255),  # EM_X86_64
    (lambda b: b[:16] + b"\x01\x00" + b[18:], 255),  # ET_REL
    (lambda b: b[:54] + b"\x20\x00" + b[56:], 1),  # e_phentsize
    (lambda b: b[:1200], 1),  # segments past EOF
])
def test_bad_images(tmp_path: Path, mem: GuestAddressSpace, mutate, status: int) -> None:
    good = guest_binary("hello.c").read_bytes()
    p = tmp_path / "bad"
    p.write_bytes(mutate(good))
    p.chmod(0o755)
    with pytest.raises(ElfError) as e:
        load_program(mem, str(p), [b"x"], [])
    assert e.value.status == status
    assert "\n" not in str(e.value)
