"""``pyqemu-aarch64``: QEMU 7.2's qemu-aarch64 command line (Linux user mode).

Options are parsed as QEMU's linux-user/main.c does: QEMU_* environment variables first,
then options (``-x`` or ``--x``) up to the first non-option, which is the program.
Hidden extras: ``-accel tcg,backend=llvm|python|interp`` picks the TCG backend (default:
llvm when llvmlite is installed, else python; ``$PYQEMU_BACKEND`` sets the default), ``-d stats``
(or ``PYQEMU_STATS=1``) prints guest instruction count and MIPS at exit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from pyqemu.accel.tcg.log import LogError, QemuLog, log_usage, parse_log_items
from pyqemu.linux_user.loader import ElfError
from pyqemu.linux_user.main import UserOptions, run_program

__all__ = ["main_aarch64"]

PROG = "qemu-aarch64"
VERSION = "7.2.0"
DEFAULT_LD_PREFIX = "/etc/qemu-binfmt/aarch64"


class UsageError(Exception):
    """A bad command line: message (without prefix) and exit status."""

    def __init__(self, message: str, status: int = 1, prefix: str = "qemu: ") -> None:
        super().__init__(message)
        self.status = status
        self.prefix = prefix


_HELP_ROWS = [
    ("-h", "", "print this help"),
    ("-help", "", ""),
    ("-g port", "QEMU_GDB", "wait gdb connection to 'port'"),
    ("-L path", "QEMU_LD_PREFIX", "set the elf interpreter prefix to 'path'"),
    ("-s size", "QEMU_STACK_SIZE", "set the stack size to 'size' bytes"),
    ("-cpu model", "QEMU_CPU", "select CPU (-cpu help for list)"),
    ("-E var=value", "QEMU_SET_ENV", "sets targets environment variable (see below)"),
    ("-U var", "QEMU_UNSET_ENV", "unsets targets environment variable (see below)"),
    ("-0 argv0", "QEMU_ARGV0", "forces target process argv[0] to be 'argv0'"),
    ("-r uname", "QEMU_UNAME", "set qemu uname release string to 'uname'"),
    ("-B address", "QEMU_GUEST_BASE", "set guest_base address to 'address'"),
    ("-R size", "QEMU_RESERVED_VA", "reserve 'size' bytes for guest virtual address space"),
    ("-d item[,...]", "QEMU_LOG",
     "enable logging of specified items (use '-d help' for a list of items)"),
    ("-D logfile", "QEMU_LOG_FILENAME", "write logs to 'logfile' (default stderr)"),
    ("-p pagesize", "QEMU_PAGESIZE", "set the host page size to 'pagesize'"),
    ("-one-insn-per-tb", "QEMU_ONE_INSN_PER_TB",
     "run with one guest instruction per emulated TB"),
    ("-singlestep", "QEMU_SINGLESTEP", "deprecated synonym for -one-insn-per-tb"),
    ("-strace", "QEMU_STRACE", "log system calls"),
    ("-seed", "QEMU_RAND_SEED", "Seed for pseudo-random number generator"),
    ("-version", "QEMU_VERSION", "display version information and exit"),
]


def usage_text() -> str:
    lines = [f"usage: {PROG} [options] program [arguments...]",
             "Linux CPU emulator (compiled for aarch64 emulation)", "",
             "Options and associated environment variables:", "",
             f"{'Argument':<20} {'Env-variable':<17} Description"]
    for arg, env, desc in _HELP_ROWS:
        lines.append(f"{arg:<20} {env:<17} {desc}".rstrip() if desc else f"{arg:<20} {env:<17} ")
    lines += ["", "Defaults:", f"QEMU_LD_PREFIX  = {DEFAULT_LD_PREFIX}",
              "QEMU_STACK_SIZE = 8388608 byte", "",
              "You can use -E and -U options or the QEMU_SET_ENV and",
              "QEMU_UNSET_ENV environment variables to set and unset",
              "environment variables for the target process.",
              "It is possible to provide several variables by separating them",
              "by commas in getsubopt(3) style. Additionally it is possible to",
              "provide the -E and -U options multiple times.", ""]
    return "\n".join(lines)


def parse_size(text: str, what: str) -> int:
    """QEMU's size syntax: a number with an optional k/M/G/T suffix (powers of 1024)."""
    mult = {"": 1, "k": 1 << 10, "K": 1 << 10, "m": 1 << 20, "M": 1 << 20, "g": 1 << 30,
            "G": 1 << 30, "t": 1 << 40, "T": 1 << 40, "b": 1, "B": 1}
    t = text.strip()
    suf = t[-1:] if t[-1:] in mult and not t[-1:].isdigit() else ""
    num = t[:-1] if suf else t
    try:
        v = int(num, 0)
    except ValueError:
        raise UsageError(f"Invalid {what} '{text}'") from None
    if v <= 0:
        raise UsageError(f"Invalid {what} '{text}'")
    return v * mult[suf]


class _Cmd:
    def __init__(self) -> None:
        self.opts = UserOptions()
        self.env = dict(os.environ)
        self.log_items: set[str] = set()
        self.log_file: str | None = None
        self.strace = False
        self.cpu_help = False
        self.gdb: str | None = None
        self.guest_env_set: list[str] = []
        self.guest_env_unset: list[str] = []
        self.pass_on: list[str] = []

    # -- handlers, each takes the option argument (or None)
    def h_help(self, _: str | None) -> None:
        sys.stdout.write(usage_text())
        sys.stdout.flush()
        raise SystemExit(0)

    def h_L(self, a: str | None) -> None:
        assert a is not None
        self.opts.prefix = a

    def h_s(self, a: str | None) -> None:
        assert a is not None
        self.opts.stack_size = parse_size(a, "stack size")

    def h_cpu(self, a: str | None) -> None:
        assert a is not None
        if a in ("help", "?"):
            self.cpu_help = True
        self.opts.cpu_model = a

    def h_E(self, a: str | None) -> None:
        assert a is not None
        self.guest_env_set += [x for x in a.split(",") if x]

    def h_U(self, a: str | None) -> None:
        assert a is not None
        self.guest_env_unset += [x for x in a.split(",") if x]

    def h_0(self, a: str | None) -> None:
        self.opts.argv0 = a

    def h_r(self, a: str | None) -> None:
        self.opts.uname_release = a

    def h_R(self, a: str | None) -> None:
        assert a is not None
        size = parse_size(a, "reserved_va")
        if size < 1 << 24:
            raise UsageError(f"Invalid reserved_va '{a}'")
        self.opts.reserved_va = (size + 0xFFF) & ~0xFFF

    def h_B(self, a: str | None) -> None:
        """Accepted and checked, then ignored: the guest space is always one reserved
        host range at a host address the kernel picks (guest va = offset in it), so a
        fixed host base buys nothing and could collide with the Python heap."""
        assert a is not None
        try:
            int(a, 0)
        except ValueError:
            raise UsageError(f"Invalid guest_base '{a}'") from None

    def h_d(self, a: str | None) -> None:
        assert a is not None
        if a == "help":  # QEMU lists the items and exits with status 1
            sys.stdout.write(log_usage() + "\n")
            sys.stdout.flush()
            raise SystemExit(1)
        items = set()
        rest = []
        for part in a.split(","):
            if part == "stats":
                self.opts.stats = True
            else:
                rest.append(part)
        if rest:
            try:
                items = parse_log_items(",".join(rest))
            except LogError:
                sys.stdout.write(log_usage() + "\n")
                sys.stdout.flush()
                raise SystemExit(1) from None
        self.log_items |= items

    def h_D(self, a: str | None) -> None:
        self.log_file = a

    def h_strace(self, _: str | None) -> None:
        self.strace = True

    def h_singlestep(self, _: str | None) -> None:
        self.opts.one_insn_per_tb = True

    def h_g(self, a: str | None) -> None:
        self.gdb = a

    def h_version(self, _: str | None) -> None:
        sys.stdout.write(f"{PROG} version {VERSION} (pyqemu)\n"
                         "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project "
                         "developers\n")
        sys.stdout.flush()
        raise SystemExit(0)

    def h_ignore(self, _: str | None) -> None:
        pass

    def h_plugin(self, _: str | None) -> None:
        raise UsageError("plugins are not supported", prefix=f"{PROG}: ")

    def h_accel(self, a: str | None) -> None:
        assert a is not None
        parts = a.split(",")
        if parts[0] != "tcg":
            raise UsageError(f"invalid accelerator '{parts[0]}'", prefix=f"{PROG}: ")
        for p in parts[1:]:
            k, _, v = p.partition("=")
            if k == "backend" and v in ("python", "interp", "llvm"):
                self.opts.backend = v
            elif k in ("one-insn-per-tb",):
                self.opts.one_insn_per_tb = v in ("on", "")
            else:
                raise UsageError(f"invalid accelerator property '{p}'", prefix=f"{PROG}: ")


#: option name -> (takes an argument, handler name, environment variable)
_OPTIONS: dict[str, tuple[bool, str, str | None]] = {
    "h": (False, "h_help", None), "help": (False, "h_help", None),
    "g": (True, "h_g", "QEMU_GDB"), "L": (True, "h_L", "QEMU_LD_PREFIX"),
    "s": (True, "h_s", "QEMU_STACK_SIZE"), "cpu": (True, "h_cpu", "QEMU_CPU"),
    "E": (True, "h_E", "QEMU_SET_ENV"), "U": (True, "h_U", "QEMU_UNSET_ENV"),
    "0": (True, "h_0", "QEMU_ARGV0"), "r": (True, "h_r", "QEMU_UNAME"),
    "B": (True, "h_B", "QEMU_GUEST_BASE"), "R": (True, "h_R", "QEMU_RESERVED_VA"),
    "d": (True, "h_d", "QEMU_LOG"), "dfilter": (True, "h_ignore", "QEMU_DFILTER"),
    "D": (True, "h_D", "QEMU_LOG_FILENAME"), "p": (True, "h_ignore", "QEMU_PAGESIZE"),
    "singlestep": (False, "h_singlestep", "QEMU_SINGLESTEP"),
    "one-insn-per-tb": (False, "h_singlestep", "QEMU_ONE_INSN_PER_TB"),
    "strace": (False, "h_strace", "QEMU_STRACE"),
    "seed": (True, "h_ignore", "QEMU_RAND_SEED"), "trace": (True, "h_ignore", "QEMU_TRACE"),
    "plugin": (True, "h_plugin", "QEMU_PLUGIN"),
    "version": (False, "h_version", "QEMU_VERSION"),
    "accel": (True, "h_accel", None),
}


def parse_command_line(argv: Sequence[str]) -> tuple[_Cmd, list[str]]:
    cmd = _Cmd()
    for name, (has_arg, hname, env) in _OPTIONS.items():
        if env and env in os.environ and hname not in ("h_help", "h_version"):
            getattr(cmd, hname)(os.environ[env] if has_arg else None)
    if os.environ.get("PYQEMU_STATS"):
        cmd.opts.stats = True
    i = 0
    args = list(argv)
    while i < len(args):
        a = args[i]
        if not a.startswith("-") or a == "-":
            break
        i += 1
        name = a[2:] if a.startswith("--") else a[1:]
        if name == "":
            break  # "--" ends the options
        if name not in _OPTIONS:
            raise UsageError(f"unknown option '{name}'")
        has_arg, hname, _env = _OPTIONS[name]
        val = None
        if has_arg:
            if i >= len(args):
                raise UsageError(f"missing argument for option '{name}'")
            val = args[i]
            i += 1
        getattr(cmd, hname)(val)
        if hname not in ("h_0",):
            cmd.pass_on += [a] + ([val] if val is not None else [])
    return cmd, args[i:]


def main_aarch64(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``pyqemu-aarch64``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except UsageError as e:
        sys.stderr.write(f"{e.prefix}{e}\n")
        return e.status
    except SystemExit as e:
        return int(e.code or 0)
    except KeyboardInterrupt:
        return 130


def _main(args: list[str]) -> int:
    cmd, rest = parse_command_line(args)
    opts = cmd.opts
    if cmd.cpu_help:
        from pyqemu.target.aarch64.cpu import cpu_model_names
        sys.stdout.write("Available CPUs:\n" + "".join(f"  {n}\n" for n in cpu_model_names()))
        return 1  # as QEMU: list_cpus(); exit(EXIT_FAILURE)
    if opts.cpu_model is not None:
        from pyqemu.target.aarch64.cpu import CPUModelError, cpu_model
        try:
            cpu_model(opts.cpu_model)
        except CPUModelError as exc:
            raise UsageError(str(exc), prefix=f"{PROG}: ") from None
    if not rest:
        raise UsageError("no user program specified")
    if cmd.gdb is not None:
        raise UsageError("-g: the gdbstub is not implemented yet in pyqemu",
                         prefix=f"{PROG}: ")
    items = set(cmd.log_items)
    if cmd.strace:
        items.add("strace")
    if items or cmd.log_file:
        try:
            opts.log = QemuLog(items, cmd.log_file)
        except LogError as exc:
            raise UsageError(str(exc), prefix=f"{PROG}: ") from None
    if opts.prefix is None and os.path.isdir(DEFAULT_LD_PREFIX):
        opts.prefix = DEFAULT_LD_PREFIX
    opts.cli_args = cmd.pass_on
    prog = rest[0]
    guest_args = [os.fsencode(a) for a in rest]
    if opts.argv0 is not None:
        guest_args[0] = os.fsencode(opts.argv0)
    env = {k: v for k, v in os.environ.items()}
    for kv in cmd.guest_env_set:
        k, _, v = kv.partition("=")
        env[k] = v
    for k in cmd.guest_env_unset:
        env.pop(k, None)
    envp = [os.fsencode(f"{k}={v}") for k, v in env.items()]
    try:
        return run_program(opts, prog, guest_args, envp)
    except ElfError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return exc.status
    except OSError as exc:
        sys.stderr.write(f"{PROG}: {exc.strerror or exc}\n")
        return 1
    except Exception as exc:  # an emulator bug: one line, no traceback (PYQEMU_DEBUG=1 shows it)
        if os.environ.get("PYQEMU_DEBUG"):
            raise
        sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {exc}\n")
        return 1


_run: Callable[..., int] = main_aarch64

if __name__ == "__main__":
    sys.exit(main_aarch64())
