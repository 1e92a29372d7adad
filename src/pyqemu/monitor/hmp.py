"""HMP, the human monitor (QEMU's monitor/hmp.c, hmp-cmds.c and misc.c, 7.2 texts).

A command table in QEMU's shape (``name|alias``, args_type, params, help) drives the
argument parser, ``help`` and TAB completion. Argument types used here: ``/`` (the /fmt
of x, xp and print: count, format x/d/u/o/c/i, size b/h/w/g; the last format and size are
remembered per monitor), ``l``/``i`` (an expression: + - * / % & | ^ ~, parentheses,
'c' and numbers in C syntax), ``s`` (a word), ``S`` (the rest of the line), ``-x`` flags,
and ``?`` for optional. Errors print QEMU's message and ``Try "help <cmd>" ...``.

Output is written with ``\\n`` turned into ``\\r\\n`` as QEMU's monitor_puts does; the
line editor (readline.py) echoes input as QEMU's does.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from pyqemu.monitor.errors import HMPError, QMPError
from pyqemu.monitor.guest_memory import phys_read, root_region, virt_read
from pyqemu.monitor.qmp import commands as qc
from pyqemu.monitor.readline import ReadLineState

__all__ = ["HMP_COMMANDS", "INFO_COMMANDS", "HMPCommand", "HMPMonitor"]

M64 = (1 << 64) - 1


@dataclasses.dataclass(frozen=True)
class HMPCommand:
    """One row of QEMU's hmp-commands.hx / hmp-commands-info.hx."""

    name: str  # "cont|c"
    args_type: str  # "fmt:/,addr:l"
    params: str  # what help shows: "/fmt addr"
    help: str
    handler: Callable[[HMPMonitor, dict[str, Any]], None] | None = None
    sub_table: tuple[HMPCommand, ...] | None = None

    def matches(self, name: str) -> bool:
        return name in self.name.split("|")


class _ExprError(Exception):
    pass


class _FmtDefaults:
    """The last /fmt format and size. QEMU keeps them in file-scope variables of
    monitor/hmp.c, so every HMP monitor of a machine (and human-monitor-command) shares
    them: here they hang off the VM."""

    def __init__(self) -> None:
        self.format = "x"
        self.size = 4

    @staticmethod
    def of(vm: Any) -> _FmtDefaults:
        d = getattr(vm, "_hmp_fmt_defaults", None)
        if d is None:
            d = _FmtDefaults()
            vm._hmp_fmt_defaults = d
        return d


class HMPMonitor:
    """An HMP session; with ``chardev`` None it only runs commands for
    ``human-monitor-command`` (:meth:`run_command_capture`)."""

    def __init__(self, vm: Any, chardev: Any | None) -> None:
        self.vm = vm
        self.chardev = chardev
        self.cpu_index = 0
        self._out: list[str] | None = None
        self._out_lock = threading.Lock()
        # QEMU's Monitor fields for sharing a mux (-nographic, mon:stdio): output is held
        # while another frontend has the focus, input refused while suspended
        self.mux_out = False
        self.reset_seen = False
        self.suspend_cnt = 0
        self._held = bytearray()
        self.rs = ReadLineState(self._echo, self._on_line, self._complete)
        if chardev is not None:
            chardev.set_frontend(self._receive, self._can_receive, self._on_chr_event)

    # ------------------------------------------------------------ output
    def print(self, text: str) -> None:
        """monitor_printf: ``\\n`` becomes ``\\r\\n``."""
        if self._out is not None:
            self._out.append(text)
            return
        data = text.replace("\n", "\r\n").encode("utf-8", "surrogateescape")
        self._write(data)

    def _echo(self, text: str) -> None:
        if self._out is not None:
            return
        self._write(text.replace("\n", "\r\n").encode("latin-1", "replace"))

    def _write(self, data: bytes) -> None:
        if self.chardev is None:
            return
        with self._out_lock:
            self._held += data
            if self.mux_out:
                return
            data, self._held = bytes(self._held), bytearray()
            self.chardev.write(data)

    def _flush(self) -> None:
        self._write(b"")

    def banner(self) -> str:
        major, minor, micro = qc.qemu_version()
        return f"QEMU {major}.{minor}.{micro} monitor - type 'help' for more information\n"

    # ------------------------------------------------------------ transport
    def _can_receive(self) -> int:
        return 0 if self.suspend_cnt > 0 else 4096

    def _on_chr_event(self, event: str) -> None:
        if event == "opened":
            self._opened()
        elif event == "mux-in":
            self.mux_out = False
            if self.reset_seen:
                self.rs.restart()
                self._resume()
                self._flush()
            else:
                self.suspend_cnt = 0
        elif event == "mux-out":
            if self.reset_seen:
                if self.suspend_cnt == 0:
                    self.print("\n")
                self._flush()
            self.suspend_cnt += 1
            self.mux_out = True

    def _opened(self) -> None:
        self.print(self.banner())
        if not self.mux_out:
            self.rs.restart()
            self.rs.show_prompt()
        self.reset_seen = True

    def _resume(self) -> None:
        if self.suspend_cnt > 0:
            self.suspend_cnt -= 1
            if self.suspend_cnt == 0:
                self.rs.show_prompt()

    def _receive(self, data: bytes) -> None:
        self.rs.feed(data)

    def _on_line(self, line: str) -> None:
        raw = line.encode("latin-1", "replace").decode("utf-8", "surrogateescape")
        # monitor_command_cb: suspended while the command runs, the prompt comes back
        # when resumed (``quit`` suspends once more, so no prompt follows it)
        self.suspend_cnt += 1
        self.handle_command(raw)
        self._resume()

    def run_command_capture(self, line: str) -> str:
        """Run one command line, returning what it printed (human-monitor-command)."""
        self._out = []
        try:
            self.handle_command(line)
            text = "".join(self._out)
        finally:
            self._out = None
        return text.replace("\n", "\r\n")

    # ------------------------------------------------------------ parsing
    def handle_command(self, cmdline: str) -> None:
        """Parse and run one command line (QEMU's handle_hmp_command)."""
        table: tuple[HMPCommand, ...] = HMP_COMMANDS
        p = 0
        while True:
            while p < len(cmdline) and cmdline[p].isspace():
                p += 1
            start = p
            while p < len(cmdline) and cmdline[p] != "/" and not cmdline[p].isspace():
                p += 1
            name = cmdline[start:p]
            if not name and p >= len(cmdline):
                return  # an empty line
            cmd = next((c for c in table if c.matches(name)), None) if name else None
            if cmd is None:
                # QEMU quotes the line from its start to the end of the bad name,
                # leading blanks included (a line starting with "/" has an empty name)
                self.print(f"unknown command: '{cmdline[:p]}'\n")
                return
            if cmd.sub_table is not None:
                rest = cmdline[p:].strip()
                if not rest:
                    self._help_table(cmd.sub_table, f"{cmd.name.split('|')[0]} ")
                    return
                table = cmd.sub_table
                continue
            break
        prefix = cmdline[:p]
        try:
            args = self._parse_arguments(cmd, cmdline, p)
        except HMPError as e:
            if str(e):
                self.print(f"{e}\n")
            self.print(f'Try "help {prefix}" for more information\n')
            return
        assert cmd.handler is not None
        try:
            cmd.handler(self, args)
        except Exception as e:  # noqa: BLE001 - a pyqemu bug must not kill the main loop
            self.print(f"Error: internal error: {type(e).__name__}: {e}\n")

    def _parse_arguments(self, cmd: HMPCommand, s: str, p: int) -> dict[str, Any]:
        args: dict[str, Any] = {}
        specs = [a for a in cmd.args_type.split(",") if a]
        for spec in specs:
            key, typ = spec.split(":", 1)
            optional = typ.endswith("?")
            if optional:
                typ = typ[:-1]
            while p < len(s) and s[p].isspace():
                p += 1
            kind = typ[0]
            if kind == "/":
                p = self._parse_fmt(s, p, args)
            elif kind in "il":
                if optional and p >= len(s):
                    continue
                val, p = self._get_expr(s, p)
                if kind == "i" and (val >> 32) & 0xFFFFFFFF:
                    raise HMPError(f"'{cmd.name}' has failed: integer is for 32-bit values")
                args[key] = val
            elif kind == "-":
                flags = typ[1:]
                while p < len(s) and s[p] == "-":
                    q = p + 1
                    while q < len(s) and not s[q].isspace():
                        if s[q] not in flags:
                            raise HMPError(f"unsupported option -{s[q]}")
                        args[f"-{s[q]}"] = True
                        q += 1
                    p = q
                    while p < len(s) and s[p].isspace():
                        p += 1
            elif kind == "s":
                if p >= len(s):
                    if optional:
                        continue
                    # QEMU names the command, not the argument
                    name = cmd.name.split("|")[0]
                    raise HMPError(f"{name}: block device name expected" if typ == "B"
                                   else f"{name}: string expected")
                q = p
                while q < len(s) and not s[q].isspace():
                    q += 1
                args[key] = s[p:q]
                p = q
            elif kind == "b":
                q = p
                while q < len(s) and not s[q].isspace():
                    q += 1
                word = s[p:q]
                if word not in ("on", "off"):
                    if not word and optional:
                        continue
                    raise HMPError("Expected 'on' or 'off'")
                args[key] = word == "on"
                p = q
            elif kind == "S":
                if p >= len(s):
                    if optional:
                        continue
                    raise HMPError(f"{cmd.name.split('|')[0]}: string expected")
                args[key] = s[p:].rstrip()
                p = len(s)
            else:  # pragma: no cover - table error
                raise AssertionError(f"bad args_type {spec}")
        while p < len(s) and s[p].isspace():
            p += 1
        if p < len(s):
            raise HMPError(f"{cmd.name}: extraneous characters at the end of line")
        return args

    def _parse_fmt(self, s: str, p: int, args: dict[str, Any]) -> int:
        defaults = _FmtDefaults.of(self.vm)
        if p < len(s) and s[p] == "/":
            p += 1
            q = p
            while q < len(s) and s[q].isdigit():
                q += 1
            count = int(s[p:q]) if q > p else 1
            p = q
            size = -1
            fmt: str | None = None
            while p < len(s):
                c = s[p]
                if c in "oxduic":
                    fmt = c
                elif c in "bhwgL":
                    size = {"b": 1, "h": 2, "w": 4, "g": 8, "L": 8}[c]
                else:
                    break
                p += 1
            if p < len(s) and not s[p].isspace():
                raise HMPError(f"invalid char in format: '{s[p]}'")
            if fmt is None:
                fmt = defaults.format
            if fmt != "i":
                if size < 0:
                    size = defaults.size
                defaults.size = size
            defaults.format = fmt
        else:
            count = 1
            fmt = defaults.format
            size = defaults.size if fmt != "i" else -1
        args["count"], args["format"], args["size"] = count, fmt, size
        return p

    # ------------------------------------------------------------ expressions
    def _get_expr(self, s: str, p: int) -> tuple[int, int]:
        pos = [p]

        def skip() -> None:
            while pos[0] < len(s) and s[pos[0]].isspace():
                pos[0] += 1

        def peek() -> str:
            return s[pos[0]] if pos[0] < len(s) else ""

        def advance() -> None:
            pos[0] += 1
            skip()

        def unary() -> int:
            c = peek()
            if c == "+":
                advance()
                return unary()
            if c == "-":
                advance()
                return -unary() & M64
            if c == "~":
                advance()
                return ~unary() & M64
            if c == "(":
                advance()
                n = sum_()
                if peek() != ")":
                    raise _ExprError("')' expected")
                advance()
                return n
            if c == "'":
                pos[0] += 1
                if pos[0] >= len(s):
                    raise _ExprError("character constant expected")
                n = ord(s[pos[0]])
                pos[0] += 1
                if peek() != "'":
                    raise _ExprError("missing terminating ' character")
                advance()
                return n
            if c == "$":
                # QEMU 7.2 has no monitor register definitions for Arm targets
                pos[0] += 1
                while pos[0] < len(s) and (s[pos[0]].isalnum() or s[pos[0]] in "_."):
                    pos[0] += 1
                raise _ExprError("unknown register")
            if c == "":
                raise _ExprError("unexpected end of expression")
            n, q = _strtoull(s, pos[0])
            if q == pos[0]:
                raise _ExprError(f"invalid char '{c}' in expression")
            pos[0] = q
            skip()
            return n

        # QEMU's precedence: + - loosest, then & | ^ (left to right), then * / %
        def logic() -> int:
            n = prod()
            while peek() and peek() in "&|^":
                op = peek()
                advance()
                m = prod()
                n = n & m if op == "&" else (n | m if op == "|" else n ^ m)
            return n

        def prod() -> int:
            n = unary()
            while peek() and peek() in "*/%":
                op = peek()
                advance()
                m = unary()
                if op == "*":
                    n = (n * m) & M64
                else:
                    if m == 0:
                        raise _ExprError("division by zero")
                    a, b = _signed(n), _signed(m)
                    q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
                    n = (q if op == "/" else a - q * b) & M64
            return n

        def sum_() -> int:
            n = logic()
            while peek() and peek() in "+-":
                op = peek()
                advance()
                m = logic()
                n = (n + m if op == "+" else n - m) & M64
            return n

        skip()
        try:
            value = sum_()
        except _ExprError as e:
            raise HMPError(str(e)) from None
        skip()
        return value, pos[0]

    # ------------------------------------------------------------ help / completion
    def _help_table(self, table: tuple[HMPCommand, ...], prefix: str) -> None:
        for c in sorted(table, key=lambda c: c.name):
            self.print(f"{prefix}{c.name} {c.params} -- {c.help}\n")

    def help_cmd(self, name: str | None) -> None:
        if not name:
            self._help_table(HMP_COMMANDS, "")
            return
        words = name.split()
        table: tuple[HMPCommand, ...] = HMP_COMMANDS
        prefix = ""
        for i, w in enumerate(words):
            cmd = next((c for c in table if c.matches(w)), None)
            if cmd is None:
                self.print(f"unknown command: '{' '.join(words[:i + 1])}'\n")
                return
            if cmd.sub_table is not None and i + 1 < len(words):
                table = cmd.sub_table
                prefix += cmd.name.split("|")[0] + " "
                continue
            if cmd.sub_table is not None:
                self._help_table(cmd.sub_table, prefix + cmd.name.split("|")[0] + " ")
                return
            self.print(f"{prefix}{cmd.name} {cmd.params} -- {cmd.help}\n")
            return

    def _complete(self, line: str) -> tuple[list[str], int]:
        words = line.split()
        if line.endswith(" ") or not words:
            words.append("")
        if len(words) == 1:
            cands = sorted(n for c in HMP_COMMANDS for n in c.name.split("|")
                           if n.startswith(words[0]))
            return cands, len(words[0])
        if len(words) == 2 and words[0] == "info":
            cands = sorted(n for c in INFO_COMMANDS for n in c.name.split("|")
                           if n.startswith(words[1]))
            return cands, len(words[1])
        if len(words) == 2 and words[0] in ("help", "?"):
            cands = sorted(n for c in HMP_COMMANDS for n in c.name.split("|")
                           if n.startswith(words[1]))
            return cands, len(words[1])
        return [], 0

    # ------------------------------------------------------------ helpers
    def cpus(self) -> list[Any]:
        return list(getattr(getattr(self.vm, "board", None), "cpus", None) or [])

    def current_cpu(self) -> Any | None:
        cpus = self.cpus()
        for c in cpus:
            if c.cpu_index == self.cpu_index:
                return c
        return cpus[0] if cpus else None


# ---------------------------------------------------------------- number parsing

def _strtoull(s: str, p: int) -> tuple[int, int]:
    """C's strtoull(s + p, &end, 0) for the monitor: (value, end); ERANGE raises."""
    q = p
    base = 10
    if s.startswith(("0x", "0X"), q) and q + 2 < len(s) and \
            s[q + 2] in "0123456789abcdefABCDEF":
        base, q = 16, q + 2
    elif s.startswith("0", q):
        base = 8
    digits = "0123456789abcdef"[:base]
    r = q
    while r < len(s) and s[r].lower() in digits:
        r += 1
    if r == q:
        return 0, p
    value = int(s[q:r], base)
    if value > M64:
        raise _ExprError("number too large")
    return value, r


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


# ---------------------------------------------------------------- commands

def _printc(c: int) -> str:
    """monitor_printc: a C int, so values above a byte print whole ('\\xfffffffe')."""
    c &= 0xFFFFFFFF
    if c == ord("'"):
        body = "\\'"
    elif c == ord("\\"):
        body = "\\\\"
    elif c == ord("\n"):
        body = "\\n"
    elif c == ord("\r"):
        body = "\\r"
    elif 32 <= c <= 126:
        body = chr(c)
    else:
        body = f"\\x{c:02x}"
    return f"'{body}'"


def _memory_dump(mon: HMPMonitor, count: int, fmt: str, wsize: int, addr: int,
                 physical: bool) -> None:
    """QEMU's memory_dump (x / xp)."""
    cpu = mon.current_cpu()
    if cpu is None and (fmt == "i" or not physical):
        mon.print("Can not dump without CPU\n")
        return
    addr &= M64
    if fmt == "i":
        _disas(mon, cpu, addr, count, physical)
        return
    length = wsize * count
    line_size = 8 if wsize == 1 else 16
    if fmt == "o":
        digits = (wsize * 8 + 2) // 3
    elif fmt in "ud":
        digits = (wsize * 8 * 10 + 32) // 33
    elif fmt == "c":
        digits = 0
        wsize = 1
    else:
        digits = wsize * 8 // 4
    while length > 0:
        line = [f"{addr:016x}:"]
        n = min(length, line_size)
        data = phys_read(mon.vm, addr, n) if physical else virt_read(mon.vm, cpu, addr, n)
        if data is None:
            mon.print("".join(line) + " Cannot access memory\n")
            return
        for i in range(0, n, wsize):
            v = int.from_bytes(data[i:i + wsize], "little")
            if fmt == "o":
                text = ("0" + format(v, "o")) if v else "0"
                line.append(" " + text.rjust(digits))
            elif fmt == "x":
                line.append(" 0x" + format(v, f"0{digits}x"))
            elif fmt == "u":
                line.append(" " + str(v).rjust(digits))
            elif fmt == "d":
                # the value is loaded zero-extended: only 8-byte words print negative
                line.append(" " + str(_signed(v)).rjust(digits))
            elif fmt == "c":
                line.append(" " + _printc(v))
        mon.print("".join(line) + "\n")
        addr = (addr + n) & M64
        length -= n


def _disas(mon: HMPMonitor, cpu: Any, addr: int, count: int, physical: bool) -> None:
    """monitor_disas: ``count`` A64 instructions (capstone, QEMU's layout)."""
    from pyqemu.target.aarch64.disas import disassemble

    for _ in range(count):
        data = phys_read(mon.vm, addr, 4) if physical else virt_read(mon.vm, cpu, addr, 4)
        if data is None:
            mon.print(f"0x{addr:08x}: Cannot access memory\n")
            return
        for line in disassemble(data, addr):
            mon.print(line + "\n")
        addr = (addr + 4) & M64


def _hmp_x(mon: HMPMonitor, a: dict[str, Any]) -> None:
    _memory_dump(mon, a["count"], a["format"], a["size"], a["addr"], physical=False)


def _hmp_xp(mon: HMPMonitor, a: dict[str, Any]) -> None:
    _memory_dump(mon, a["count"], a["format"], a["size"], a["addr"], physical=True)


def _hmp_print(mon: HMPMonitor, a: dict[str, Any]) -> None:
    fmt, v = a["format"], a["val"]
    if fmt == "o":
        mon.print(("0" + format(v, "o") if v else "0") + "\n")
    elif fmt == "x":
        mon.print((f"{v:#x}" if v else "0") + "\n")
    elif fmt == "u":
        mon.print(f"{v}\n")
    elif fmt == "c":
        mon.print(_printc(v) + "\n")
    else:
        mon.print(f"{_signed(v)}\n")


def _qmp_call(mon: HMPMonitor, fn: Callable[[], Any]) -> None:
    try:
        fn()
    except QMPError as e:
        mon.print(f"Error: {e.desc}\n")


def _hmp_cont(mon: HMPMonitor, a: dict[str, Any]) -> None:
    vm = mon.vm
    if vm.runstate in ("shutdown", "internal-error"):
        mon.print("Error: Resetting the Virtual Machine is required\n")
        return
    vm.cont()


def _hmp_quit(mon: HMPMonitor, a: dict[str, Any]) -> None:
    mon.suspend_cnt += 1  # monitor_suspend: no prompt after quit
    mon.vm.quit()


def _hmp_cpu(mon: HMPMonitor, a: dict[str, Any]) -> None:
    index = a["index"]
    if not any(c.cpu_index == index for c in mon.cpus()):
        mon.print("invalid CPU index\n")
        return
    mon.cpu_index = index


def _hmp_help(mon: HMPMonitor, a: dict[str, Any]) -> None:
    mon.help_cmd(a.get("name"))


def _info_status(mon: HMPMonitor, a: dict[str, Any]) -> None:
    st = qc.query_status(mon.vm)
    text = "VM status: " + ("running" if st["running"] else "paused")
    if not st["running"] and st["status"] != "paused":
        text += f" ({st['status']})"
    mon.print(text + "\n")


def _info_version(mon: HMPMonitor, a: dict[str, Any]) -> None:
    v = qc.query_version()
    q = v["qemu"]
    mon.print(f"{q['major']}.{q['minor']}.{q['micro']}{v['package']}\n")


def _info_cpus(mon: HMPMonitor, a: dict[str, Any]) -> None:
    current = mon.current_cpu()
    for info in qc.query_cpus_fast(mon.vm):
        active = "*" if current is not None and info["cpu-index"] == current.cpu_index \
            else " "
        mon.print(f"{active} CPU #{info['cpu-index']}: thread_id={info['thread-id']}\n")


def _cpu_dump(cpu: Any) -> str:
    """cpu_dump_state(cs, CPU_DUMP_FPU) for an AArch64 vCPU."""
    from pyqemu.target.aarch64.cpu import dump_state

    s = cpu.state
    fe = getattr(getattr(cpu, "ctx", None), "frontend", None)
    model = getattr(fe, "model", None)
    # CPACR_EL1.FPEN: FP/SIMD traps at the current EL -> "FPU disabled" (no EL2/EL3)
    fpen = (int(getattr(s, "cpacr_el1", 0)) >> 20) & 3
    el = int(getattr(s, "current_el", 0))
    disabled = fpen in (0, 2) or (fpen == 1 and el == 0)
    if disabled:
        return dump_state(s, fpu=False, model=model).rstrip("\n") + "    FPU disabled\n"
    return dump_state(s, fpu=True, model=model)


def _info_registers(mon: HMPMonitor, a: dict[str, Any]) -> None:
    cpus = mon.cpus()
    if a.get("-a"):
        chosen = cpus
    elif "vcpu" in a:
        chosen = [c for c in cpus if c.cpu_index == a["vcpu"]]
        if not chosen:
            mon.print(f"CPU#{a['vcpu']} not available\n")
            return
    else:
        cur = mon.current_cpu()
        if cur is None:
            mon.print("No CPU available\n")
            return
        chosen = [cur]
    for cpu in chosen:
        mon.print(f"\nCPU#{cpu.cpu_index}\n")
        mon.print(_cpu_dump(cpu))


def _info_name(mon: HMPMonitor, a: dict[str, Any]) -> None:
    info = qc.query_name(mon.vm)
    if "name" in info:
        mon.print(f"{info['name']}\n")


def _info_uuid(mon: HMPMonitor, a: dict[str, Any]) -> None:
    mon.print(f"{qc.query_uuid(mon.vm)['UUID']}\n")


def _info_kvm(mon: HMPMonitor, a: dict[str, Any]) -> None:
    mon.print("kvm support: not compiled\n")


def _info_chardev(mon: HMPMonitor, a: dict[str, Any]) -> None:
    for c in qc.query_chardev(mon.vm):
        mon.print(f"{c['label']}: filename={c['filename']}\n")


def _info_history(mon: HMPMonitor, a: dict[str, Any]) -> None:
    for i, line in enumerate(mon.rs.history):
        # the editor keeps raw bytes as latin-1 characters
        raw = line.encode("latin-1", "replace").decode("utf-8", "surrogateescape")
        mon.print(f"{i}: '{raw}'\n")


def _print_block_info(mon: HMPMonitor, info: dict[str, Any]) -> None:
    """print_block_info of QEMU's block/monitor/block-hmp-cmds.c, from a query-block
    entry."""
    ins = info.get("inserted")
    head = info.get("device", "")
    if ins and ins.get("node-name"):
        head += f" ({ins['node-name']})"
    if ins:
        flags = (", read-only" if ins.get("ro") else "") + \
            (", encrypted" if ins.get("encrypted") else "")
        mon.print(f"{head}: {ins.get('file', '')} ({ins.get('drv', '')}{flags})\n")
    else:
        mon.print(f"{head}: [not inserted]\n")
    if "qdev" in info:
        mon.print(f"    Attached to:      {info['qdev']}\n")
    io = info.get("io-status")
    if io and io != "ok":
        mon.print(f"    I/O status:       {io}\n")
    if info.get("removable"):
        mon.print(f"    Removable device: {'' if info.get('locked') else 'not '}locked, "
                  f"tray {'open' if info.get('tray_open') else 'closed'}\n")
    if not ins:
        return
    cache = ins.get("cache", {})
    mon.print("    Cache mode:       "
              + ("writeback" if cache.get("writeback") else "writethrough")
              + (", direct" if cache.get("direct") else "")
              + (", ignore flushes" if cache.get("no-flush") else "") + "\n")
    if ins.get("backing_file"):
        mon.print(f"    Backing file:     {ins['backing_file']} "
                  f"(chain depth: {ins.get('backing_file_depth', 0)})\n")
    dz = ins.get("detect_zeroes", "off")
    if dz != "off":
        mon.print(f"    Detect zeroes:    {dz}\n")


def _info_block(mon: HMPMonitor, a: dict[str, Any]) -> None:
    device = a.get("device")
    for i, info in enumerate(qc.query_block(mon.vm)):
        if device and info.get("device") != device:
            continue
        if not info.get("device"):
            continue
        if i:  # as QEMU: a separating newline unless it is the first of all backends
            mon.print("\n")
        _print_block_info(mon, info)


def _info_network(mon: HMPMonitor, a: dict[str, Any]) -> None:
    from pyqemu.monitor.net import info_network

    mon.print(info_network(mon.vm))


def _hmp_set_link(mon: HMPMonitor, a: dict[str, Any]) -> None:
    from pyqemu.monitor.net import set_link

    _qmp_call(mon, lambda: set_link(mon.vm, a["name"], a["up"]))


def _info_mtree(mon: HMPMonitor, a: dict[str, Any]) -> None:
    from pyqemu.monitor.mtree import format_mtree

    root = root_region(mon.vm)
    if root is None:
        return
    mon.print(format_mtree(root, len(mon.cpus()), flat=bool(a.get("-f"))))


INFO_COMMANDS: tuple[HMPCommand, ...] = (
    HMPCommand("block", "nodes:-n,verbose:-v,device:s?", "[-n] [-v] [device]",
               "show info of one block device or all block devices (-n: show named "
               "nodes; -v: show details)", _info_block),
    HMPCommand("chardev", "", "", "show the character devices", _info_chardev),
    HMPCommand("cpus", "", "", "show infos for each CPU", _info_cpus),
    HMPCommand("history", "", "", "show the command line history", _info_history),
    HMPCommand("kvm", "", "", "show KVM information", _info_kvm),
    HMPCommand("mtree", "flatview:-f,dispatch_tree:-d,owner:-o,disabled:-D",
               "[-f][-d][-o][-D]",
               "show memory tree (-f: dump flat view for address spaces;-d: dump "
               "dispatch tree, valid with -f only);-o: dump region owners/parents;-D: "
               "dump disabled regions", _info_mtree),
    HMPCommand("name", "", "", "show the current VM name", _info_name),
    HMPCommand("network", "", "", "show the network state", _info_network),
    HMPCommand("registers", "cpustate_all:-a,vcpu:i?", "[-a|vcpu]",
               "show the cpu registers (-a: show register info for all cpus; vcpu: "
               "specific vCPU to query; show the current CPU's registers if no argument "
               "is specified)", _info_registers),
    HMPCommand("status", "", "", "show the current VM status (running|paused)",
               _info_status),
    HMPCommand("uuid", "", "", "show the current VM UUID", _info_uuid),
    HMPCommand("version", "", "", "show the version of QEMU", _info_version),
)

HMP_COMMANDS: tuple[HMPCommand, ...] = (
    HMPCommand("cont|c", "", "", "resume emulation", _hmp_cont),
    HMPCommand("cpu", "index:i", "index", "set the default CPU", _hmp_cpu),
    HMPCommand("help|?", "name:S?", "[cmd]", "show the help", _hmp_help),
    HMPCommand("info", "item:s?", "[subcommand]",
               "show various information about the system state",
               sub_table=INFO_COMMANDS),
    HMPCommand("print|p", "fmt:/,val:l", "/fmt expr",
               "print expression value (use $reg for CPU register access)", _hmp_print),
    HMPCommand("quit|q", "", "", "quit the emulator", _hmp_quit),
    HMPCommand("set_link", "name:s,up:b", "name on|off",
               "change the link status of a network adapter", _hmp_set_link),
    HMPCommand("stop|s", "", "", "stop emulation", lambda m, a: m.vm.stop()),
    HMPCommand("system_powerdown", "", "", "send system power down event",
               lambda m, a: m.vm.system_powerdown()),
    HMPCommand("system_reset", "", "", "reset the system",
               lambda m, a: m.vm.system_reset()),
    HMPCommand("x", "fmt:/,addr:l", "/fmt addr", "virtual memory dump starting at 'addr'",
               _hmp_x),
    HMPCommand("xp", "fmt:/,addr:l", "/fmt addr",
               "physical memory dump starting at 'addr'", _hmp_xp),
)
