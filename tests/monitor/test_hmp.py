"""HMP against the real qemu-system-aarch64 7.2 over a unix socket, byte for byte.

Both machines are paused (-S) with tests/monitor/guest/pattern.s loaded, so memory and
registers agree. The comparison is of the raw bytes a client receives (QEMU's readline
echo with its escape sequences, CRLF line ends, the prompt), except for values that
differ by nature, each normalised here:
- the version number in the banner and ``info version`` (7.2.x + distribution package
  vs 7.2.0 + "pyqemu <version>");
- vCPU host thread ids in ``info cpus``;
- A64 mnemonics where QEMU's capstone 4 and pyqemu's capstone 5 spell an instruction
  differently (``movz`` vs its alias ``mov``): address and encoding columns must match.
"""

from __future__ import annotations

import re

from tests.monitor.conftest import LOAD, NAME, UUID, HMPClient, Machine

# capstone 4 (QEMU) -> capstone 5 (pyqemu) spellings of the same instruction
_CAPSTONE_ALIASES = {"movz    ": "mov     "}


def _norm(text: str) -> str:
    text = re.sub(r"thread_id=\d+", "thread_id=<tid>", text)
    for a, b in _CAPSTONE_ALIASES.items():
        text = text.replace(a, b)
    return text


def _both(machines: tuple[Machine, Machine]) -> tuple[HMPClient, HMPClient]:
    q, p = machines
    return HMPClient(q.hmp_path), HMPClient(p.hmp_path)


def test_banner_and_version(machines: tuple[Machine, Machine]) -> None:
    hq, hp = _both(machines)
    vq = re.fullmatch(rb"QEMU (7\.2\.\d+) monitor - type 'help' for more information\r\n"
                      rb"\(qemu\) ", hq.banner)
    vp = re.fullmatch(rb"QEMU (7\.2\.\d+) monitor - type 'help' for more information\r\n"
                      rb"\(qemu\) ", hp.banner)
    assert vq and vp, (hq.banner, hp.banner)
    oq, op = hq.output("info version"), hp.output("info version")
    assert oq.startswith(vq.group(1).decode()) and oq.endswith("\r\n")
    assert op == f"{vp.group(1).decode()}pyqemu {__import__('pyqemu').__version__}\r\n"


def _pattern_commands(pat: int) -> list[str]:
    """x/xp in every format and size (the order matters: /fmt defaults carry over)."""
    cmds = []
    for size in "bhwg":
        for fmt in "xduo":
            cmds.append(f"x /9{fmt}{size} {pat:#x}")
    cmds += [f"x /40c {pat + 16:#x}", f"xp /3x {pat:#x}", f"x {pat:#x}", f"x /2 {pat:#x}",
             f"xp /2xg {pat + 0x30:#x}", f"x /4xh {pat + 3:#x}", f"xp /3i {LOAD:#x}",
             f"x /3i {LOAD:#x}", f"x {LOAD + 4:#x}", f"x /b {LOAD:#x}", f"x /x {pat:#x}",
             f"x /2x {pat:#x}+16", f"x /2x ({pat:#x}+8)*1", f"x /2x {pat:#x}|3",
             f"xp /2w {pat:#x} ", f"x /0x {pat:#x}", "xp /2x 0x4fffffff8",
             "x /2x 9-10", f"xp/4xb {pat:#x}", f"x/2ug {pat + 0x30:#x}",
             f"x /33xb {pat:#x}", f"x /17xg {pat:#x}",
             "p 1+2*3", "p /x 255", "p /d -1", "p /u -1", "p /o 8", "p /c 65",
             "p /x (1<<4)", "p 7/2", "p -7/2", "p -7%3", "p ~0", "p 'a'", "p 0x10^0x11",
             "p /x 0", "p 010"]
    return cmds


def test_memory_dumps_match_qemu(machines: tuple[Machine, Machine],
                                 pattern: tuple[object, int]) -> None:
    hq, hp = _both(machines)
    _, pat = pattern
    diffs = []
    for cmd in _pattern_commands(pat):
        a, b = _norm(hq.cmd(cmd).decode("latin-1")), _norm(hp.cmd(cmd).decode("latin-1"))
        if a != b:
            diffs.append(f"{cmd!r}:\n qemu   {a!r}\n pyqemu {b!r}")
    assert not diffs, "\n".join(diffs)


ERROR_LINES = [
    "foo", "info foo", "info", "x /2z 0", "x /2x", "x /2x foo", "x /2x $pc", "x /2x 10/0",
    "x /2x 0x1234567890abcdef1", "x /-1x 0", "x /2x 0x40100000 0x10", "info status foo",
    "stop now", "help x", "help info status", "help nosuch", "help info", "x /2x (1+2",
    "x /2x 'a", "p", "cpu 7", "info registers 9", "", "   ", "x   /2x   0x40100020",
]


def test_errors_and_help_match_qemu(machines: tuple[Machine, Machine]) -> None:
    hq, hp = _both(machines)
    diffs = []
    for cmd in ERROR_LINES:
        a, b = hq.cmd(cmd), hp.cmd(cmd)
        if cmd in ("info", "help info"):
            # pyqemu lists fewer info commands: each of its lines must be QEMU's
            ql = set(a.decode().split("\r\n"))
            extra = [ln for ln in b.decode().split("\r\n")[1:-1] if ln not in ql]
            assert not extra, extra
            continue
        if a != b:
            diffs.append(f"{cmd!r}:\n qemu   {a!r}\n pyqemu {b!r}")
    assert not diffs, "\n".join(diffs)


def test_help_lines_are_qemus(machines: tuple[Machine, Machine]) -> None:
    hq, hp = _both(machines)
    theirs = set(hq.output("help").split("\r\n"))
    ours = hp.output("help").split("\r\n")[:-1]
    assert len(ours) >= 10
    assert [ln for ln in ours if ln not in theirs] == []
    assert ours == sorted(ours)


def test_info_commands_match_qemu(machines: tuple[Machine, Machine]) -> None:
    hq, hp = _both(machines)
    for cmd in ("info status", "info registers", "info registers -a", "info registers 0",
                "info cpus", "info name", "info uuid", "info kvm", "info block",
                "info history"):
        assert _norm(hp.output(cmd)) == _norm(hq.output(cmd)), cmd
    assert hp.output("info name") == f"{NAME}\r\n"
    assert hp.output("info uuid") == f"{UUID}\r\n"


def test_run_control_matches_qemu(machines: tuple[Machine, Machine]) -> None:
    hq, hp = _both(machines)
    for cmd in ("info status", "c", "info status", "stop", "info status", "cont",
                "info status", "s", "info status", "system_powerdown", "info status"):
        assert hp.cmd(cmd) == hq.cmd(cmd), cmd


def test_quit(fresh_machines: tuple[Machine, Machine]) -> None:
    q, p = fresh_machines
    hq = HMPClient(q.hmp_path)
    hq.sock.sendall(b"q\r")
    tail = b""
    while chunk := hq.sock.recv(4096):  # QEMU exits: the connection closes
        tail += chunk
    assert tail == b"q\x1b[K\r\n"
    hp = HMPClient(p.hmp_path)
    hp.sock.sendall(b"q\r")
    if p.vm is None:  # pyqemu-system-aarch64: the same bytes, then the process ends
        tail = b""
        while chunk := hp.sock.recv(4096):
            tail += chunk
        assert tail == b"q\x1b[K\r\n"
        assert p.proc is not None and p.proc.wait(20) == 0
        assert q.proc is not None and q.proc.wait(20) == 0
        return
    for _ in range(100):
        if p.vm.runstate == "shutdown":
            break
        __import__("time").sleep(0.02)
    assert p.vm.runstate == "shutdown"


def test_info_mtree_flash_is_romd(machines: tuple[Machine, Machine]) -> None:
    """The flash banks as QEMU prints them (pflash in ROM device mode)."""
    hq, hp = _both(machines)
    theirs = [ln for ln in hq.output("info mtree").split("\r\n") if "virt.flash" in ln]
    ours = [ln for ln in hp.output("info mtree").split("\r\n") if "virt.flash" in ln]
    assert theirs and all("(prio 0, romd)" in ln for ln in theirs)
    assert ours and set(ours) <= set(theirs)


def test_info_mtree_lines_are_qemus(machines: tuple[Machine, Machine]) -> None:
    """Our lines (RAM, PL011, ... and the address-space header) must be QEMU's."""
    hq, hp = _both(machines)
    # QEMU prints its address spaces in hash-table order: find the system memory block
    blocks = [b.split("\r\n") for b in hq.output("info mtree").split("\r\n\r\n")]
    theirs = next(b for b in blocks if "address-space: memory" in b)
    ours = hp.output("info mtree").split("\r\n")
    assert ours[:3] == ["address-space: cpu-memory-0", "address-space: memory",
                        "  0000000000000000-ffffffffffffffff (prio 0, i/o): system"]
    assert sorted(ours[:2]) == sorted(ln for ln in theirs if ln.startswith("address-space"))
    assert ours[2] in theirs
    for line in ours[3:]:
        if line:
            assert line in theirs, line
    assert "    0000000040000000-0000000047ffffff (prio 0, ram): mach-virt.ram" in ours
    assert "    0000000009000000-0000000009000fff (prio 0, i/o): pl011" in ours


# keystrokes: typing, backspace, ^A/^E, arrows, ^W, Delete, history up/down, TAB
EDITS = [
    b"info statsu\x7f\x7fus", b"nfo status\x01i", b"x /2x 0x40100020\x1b[D\x1b[D\x1b[C\x05",
    b"info version\x17\x17cpus", b"\x1b[A", b"\x1b[A\x1b[A\x1b[B", b"info  \x1b[3~\x08kvm",
    b"status\x1b[1~info \x1b[4~", b"inf\x1bOHx\x1bOF", b"info vers\t", b"qu\t",
    b"info registers\x1b[D\x1b[D\x1b[D\x04\x04\x1b[C",
]


def test_readline_echo_matches_qemu(machines: tuple[Machine, Machine]) -> None:
    hq, hp = _both(machines)
    for prep in (b"info kvm", b"info name"):  # some history
        hq.cmd(prep)
        hp.cmd(prep)
    import time

    for keys in EDITS:
        if keys.endswith(b"\t"):  # completion: no Enter, read what came back
            hq.sock.sendall(keys)
            hp.sock.sendall(keys)
            time.sleep(0.3)
            a, b = hq.sock.recv(65536), hp.sock.recv(65536)
            assert b == a, keys
            # finish the line harmlessly: "z" in front makes it an unknown command
            assert hp.cmd(b"\x01z") == hq.cmd(b"\x01z")
            continue
        a, b = _norm(hq.cmd(keys).decode("latin-1")), _norm(hp.cmd(keys).decode("latin-1"))
        assert b == a, keys


def test_human_monitor_command_matches_hmp(machines: tuple[Machine, Machine],
                                           pattern: tuple[object, int]) -> None:
    """QMP's human-monitor-command returns what HMP prints (CRLF included)."""
    import asyncio

    from qemu.qmp import QMPClient

    _, pat = pattern

    async def run(m: Machine) -> list[str]:
        qmp = QMPClient(m.kind)
        await qmp.connect(m.qmp_path)
        out = []
        for line in ("info registers", f"x /4xb {pat:#x}", f"xp /2c {pat + 16:#x}",
                     "info nothing", "x /z", "help stop", "stop", "info status", ""):
            r = await qmp.execute("human-monitor-command", {"command-line": line})
            assert isinstance(r, str)
            out.append(r)
        await qmp.disconnect()
        return out

    q, p = machines
    assert asyncio.run(run(p)) == asyncio.run(run(q))


def test_registers_after_running_match_qemu(machines: tuple[Machine, Machine]) -> None:
    """Run the guest to its WFI loop, stop, and compare ``info registers`` (FP/SIMD on:
    FPCR/FPSR and the Q registers are shown)."""
    import time

    hq, hp = _both(machines)
    for h in (hq, hp):
        h.cmd("c")
    time.sleep(1.0)
    for h in (hq, hp):
        h.cmd("stop")
    theirs, ours = hq.output("info registers"), hp.output("info registers")
    assert "FPCR=00400000" in theirs and "Q01=0f0e0d0c0b0a0908:0706050403020100" in theirs
    assert ours and set(ours) <= set(theirs)


def _random_lines(seed: int, pat: int, n: int) -> list[str]:
    """Random HMP ``p``/``x``/``xp`` lines: C-like expressions (decimal, hex, octal,
    character constants, unary + - ~, * / % & | ^ + -, parentheses, odd spacing) and
    random /fmt (count, format, size in any order)."""
    import random

    rng = random.Random(seed)

    def number() -> str:
        v = rng.choice([0, 1, 7, 8, 10, 255, 4096, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 40,
                        rng.randrange(1 << 16)])
        return rng.choice([str(v), hex(v), "0" + format(v, "o") if v else "0",
                           f"'{rng.choice('aZ0 ~')}'"])

    def expr(depth: int = 0) -> str:
        r = rng.random()
        if depth > 2 or r < 0.35:
            return number()
        if r < 0.5:
            return rng.choice("-~+") + expr(depth + 1)
        if r < 0.6:
            return "(" + expr(depth + 1) + ")"
        op = rng.choice(["+", "-", "*", "/", "%", "&", "|", "^"])
        sp = rng.choice(["", " ", "  "])
        return expr(depth + 1) + sp + op + sp + expr(depth + 1)

    def fmt() -> str:
        parts = [rng.choice("xduoc")] if rng.random() < 0.8 else []
        if rng.random() < 0.7:
            parts.append(rng.choice("bhwg"))
        rng.shuffle(parts)
        count = str(rng.randrange(0, 20)) if rng.random() < 0.8 else ""
        return "/" + count + "".join(parts)

    lines = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.4:
            lines.append(f"p {fmt() if rng.random() < 0.7 else ''} {expr()}")
        else:
            cmd = rng.choice(["x", "xp"])
            addr = f"{pat:#x}+{rng.randrange(0, 0x60)}"
            lines.append(f"{cmd} {fmt()} {addr}")
    return lines


def test_random_expressions_and_dumps_match_qemu(machines: tuple[Machine, Machine],
                                                  pattern: tuple[object, int]) -> None:
    hq, hp = _both(machines)
    _, pat = pattern
    diffs = []
    for line in _random_lines(1234, pat, 150):
        a, b = hq.output(line), hp.output(line)
        if a != b:
            diffs.append(f"{line!r}:\n qemu   {a!r}\n pyqemu {b!r}")
    assert not diffs, "\n".join(diffs[:10])


_KEYS = [b"z", b"z", b"a", b" ", b"/", b"\x7f", b"\x08", b"\x01", b"\x05", b"\x04", b"\x17",
         b"\x1b[D", b"\x1b[C", b"\x1b[A", b"\x1b[B", b"\x1b[3~", b"\x1b[1~", b"\x1b[4~",
         b"\x1bOH", b"\x1bOF", b"\xc3\xa9", b"\xff", b"\x1bx", b"\r"]


def _keystroke_script(seed: int, n: int) -> list[bytes]:
    """Random editing sessions, each ending in Enter, kept only if every line they would
    run is empty or starts with "z" (an unknown command in QEMU and pyqemu alike; the
    check runs the keys through pyqemu's line editor offline, only to choose inputs)."""
    import random

    from pyqemu.monitor.readline import ReadLineState

    rng = random.Random(seed)
    scripts: list[bytes] = []
    lines: list[str] = []
    rs = ReadLineState(lambda s: None, lines.append)
    while len(scripts) < n:
        keys = b"".join(rng.choice(_KEYS) for _ in range(rng.randrange(1, 25))) + b"\r"
        trial = ReadLineState(lambda s: None, lines.append)
        trial.history = list(rs.history)
        lines.clear()
        trial.feed(keys)
        if all(not ln.strip() or ln.lstrip().startswith("z") for ln in lines):
            rs.history = trial.history
            scripts.append(keys)
    return scripts


def _read_prompts(h: HMPClient, count: int) -> bytes:
    out = b""
    while out.count(b"(qemu) ") < count:
        d = h.sock.recv(65536)
        if not d:
            break
        out += d
    return out


def test_random_line_editing_matches_qemu(fresh_machines: tuple[Machine, Machine]
                                          ) -> None:
    """Random keystrokes (insert, delete, cursor moves, word erase, history, UTF-8 and
    invalid bytes, unknown escapes): the echo and the results byte for byte as QEMU's."""
    hq, hp = _both(fresh_machines)
    diffs = []
    for keys in _keystroke_script(99, 150):  # enough to fill the 64-entry history
        enters = keys.count(b"\r")
        hq.sock.sendall(keys)
        hp.sock.sendall(keys)
        a, b = _read_prompts(hq, enters), _read_prompts(hp, enters)
        if a != b:
            diffs.append(f"{keys!r}:\n qemu   {a!r}\n pyqemu {b!r}")
    assert not diffs, "\n".join(diffs[:5])


def test_info_mtree_flat_lines_are_qemus(machines: tuple[Machine, Machine]) -> None:
    """``info mtree -f``: the flat view of system memory in QEMU's layout."""
    hq, hp = _both(machines)
    blocks = [b.split("\r\n") for b in hq.output("info mtree -f").split("\r\n\r\n")]
    theirs = next(b for b in blocks if ' AS "memory", root: system' in b)
    ours = hp.output("info mtree -f").split("\r\n")
    assert ours[0] == "FlatView #0"
    assert ours[1:4] == theirs[1:4]
    for line in ours[4:]:
        if line:
            assert line in theirs, line
    assert "  0000000009000000-0000000009000fff (prio 0, i/o): pl011" in ours
