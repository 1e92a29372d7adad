"""-icount against qemu-system-aarch64 7.2 -icount: the same bare-metal probe runs on
QEMU's virt and on pyqemu's virt board (python backend and its cold tier), and the
counter values it records must be equal, not merely close: under ``shift=N,sleep=off``
QEMU's virtual clock is ``instructions executed << N`` plus the idle warps to timer
deadlines, so each CNTVCT read and the instruction at which a timer interrupt is taken
are the same every run.

Also: the option's validation (QEMU's messages for the same -icount strings), and
``sleep=on`` (idle time follows the host clock) against ``sleep=off`` (it jumps).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pyqemu.cli import qemuopts
from pyqemu.machine.icount import IcountConfig, IcountError, icount_configure
from tests.conftest import require_tool
from tests.hw.timer.gtprobe import build, program, results
from tests.hw.timer.test_gtimer_oracle import GICV3_ACK, GICV3_EOI, GICV3_SETUP
from tests.machine.virtboard import config, run_board

COUNTER_BODY = """
    mrs x1, cntvct_el0          // the 6th instruction of the probe
    rec x1
    mrs x2, cntvct_el0
    rec x2
    nop
    nop
    nop
    mrs x3, cntvct_el0
    rec x3
    mov x5, #100                // a one-block loop
1:  subs x5, x5, #1
    b.ne 1b
    mrs x3, cntvct_el0
    rec x3
    mov x5, #100                // the read inside the loop's block
1:  mrs x6, cntvct_el0
    subs x5, x5, #1
    b.ne 1b
    rec x6
    mrs x6, cntpct_el0          // CNTPCT counts the same clock
    rec x6
    mrs x7, cntvct_el0
    mrs x8, cntvct_el0          // two reads in one block
    rec x7
    rec x8
"""

IRQ_HANDLER = """
irq_handler:
    mrs x10, cntvct_el0
    rec x10
    ACK
    rec x9
    msr cntv_ctl_el0, xzr
    EOI
    add x26, x26, #1
    eret
""".replace("ACK", GICV3_ACK).replace("EOI", GICV3_EOI)

# the timer interrupt: after an idle WFI (the clock warps to the deadline), then during
# busy loops of 3 and 7 instructions per block (taken at the deadline's instruction,
# inside a block)
TIMER_BODY = GICV3_SETUP + """
    mov x26, #0
    mrs x1, cntvct_el0
    rec x1
    ldr x2, =5000
    msr cntv_tval_el0, x2
    mov x2, #1
    msr cntv_ctl_el0, x2
    msr daifclr, #2
6:  wfi
    cbz x26, 6b
    mrs x1, cntvct_el0
    rec x1
    ldr x2, =3001
    msr cntv_tval_el0, x2
    mov x2, #1
    msr cntv_ctl_el0, x2
    mov x5, #0
7:  add x5, x5, #1
    cmp x26, #2
    b.ne 7b
    rec x5
    mrs x1, cntvct_el0
    rec x1
    ldr x2, =2999
    msr cntv_tval_el0, x2
    mov x2, #1
    msr cntv_ctl_el0, x2
    mov x5, #0
8:  add x5, x5, #1
    add x6, x6, #1
    add x6, x6, #1
    add x6, x6, #1
    add x6, x6, #1
    cmp x26, #3
    b.ne 8b
    rec x5
    mrs x1, cntvct_el0
    rec x1
    msr daifset, #2
"""


def _qemu(elf: Path, icount: str) -> list[int]:
    exe = require_tool("qemu-system-aarch64")
    proc = subprocess.run(
        [exe, "-M", "virt,gic-version=3", "-cpu", "cortex-a72", "-m", "128M", "-nodefaults",
         "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
         "-icount", icount, "-kernel", str(elf)],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=True)
    return results(proc.stdout.decode())


def _pyqemu(elf: Path, icount: str, backend: str = "python") -> tuple[list[int], float]:
    cfg = config(cpu="cortex-a72", mem=128 << 20, kernel=str(elf),
                 props={"gic-version": "3"}, accel_props={"backend": backend},
                 icount=icount_configure(qemuopts.parse(icount, implied="shift").as_dict()))
    t0 = time.monotonic()
    status, out, _vm = run_board(cfg, timeout=120)
    assert status == 0
    return results(out.decode()), time.monotonic() - t0


def _compare(tmp_path: Path, body: str, icount: str, irq: bool = False,
             cold: bool = False, monkeypatch: pytest.MonkeyPatch | None = None) -> list[int]:
    elf, _ = build(tmp_path, program(body, "irq_handler" if irq else None) +
                   (IRQ_HANDLER if irq else ""))
    theirs = _qemu(elf, icount)
    if cold:
        assert monkeypatch is not None
        # every block stays in the cold tier (closures) for the whole run
        monkeypatch.setenv("PYQEMU_TIER", str(1 << 30))
    ours, _ = _pyqemu(elf, icount)
    assert theirs, "QEMU printed nothing"
    assert ours == theirs, (f"qemu   {[hex(x) for x in theirs]}\n"
                            f"pyqemu {[hex(x) for x in ours]}")
    return theirs


@pytest.mark.parametrize("icount", ["shift=0,sleep=off", "shift=4,sleep=off",
                                    "7,sleep=off"])
def test_counter_counts_instructions(tmp_path: Path, icount: str) -> None:
    """CNTVCT = (instructions retired, the reading one included) << shift / 16 ns,
    exactly QEMU's values (shift=4: one tick per instruction)."""
    out = _compare(tmp_path, COUNTER_BODY, icount)
    if icount.startswith("shift=4"):
        assert out[:3] == [6, 8, 13]  # sanity: instructions, one tick each


@pytest.mark.parametrize("icount", ["shift=0,sleep=off", "shift=4,sleep=off"])
def test_timer_interrupt_at_the_same_instruction(tmp_path: Path, icount: str) -> None:
    """A WFI warps the clock to the timer's deadline; during a busy loop the interrupt
    is taken at the deadline's instruction, in the middle of a block (the loop counts
    and every CNTVCT read equal QEMU's)."""
    out = _compare(tmp_path, TIMER_BODY, icount, irq=True)
    assert out.count(27) == 3  # three virtual-timer interrupts (INTID 27)


def test_cold_tier_counts_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cold tier (closures) is instrumented as the compiled blocks are."""
    _compare(tmp_path, TIMER_BODY, "shift=4,sleep=off", irq=True, cold=True,
             monkeypatch=monkeypatch)


WAIT_BODY = GICV3_SETUP + """
    mov x26, #0
    ldr x2, =31250000            // 0.5 s of virtual time
    msr cntv_tval_el0, x2
    mov x2, #1
    msr cntv_ctl_el0, x2
    msr daifclr, #2
6:  wfi
    cbz x26, 6b
    msr daifset, #2
"""


def test_sleep_on_follows_host_time_when_idle(tmp_path: Path) -> None:
    """sleep=on: a vCPU idle until a deadline 0.5 s of virtual time ahead waits about
    that long on the host; sleep=off jumps there at once."""
    elf, _ = build(tmp_path, program(WAIT_BODY, "irq_handler") + IRQ_HANDLER)
    on, t_on = _pyqemu(elf, "shift=0,sleep=on")
    off, t_off = _pyqemu(elf, "shift=0,sleep=off")
    assert on[1] == off[1] == 27
    assert on[0] >= 31250000 and off[0] >= 31250000  # woken after the deadline
    assert t_on >= 0.45, t_on
    assert t_on - t_off >= 0.4, (t_on, t_off)


@pytest.mark.parametrize("option", [
    "shift=11", "shift=-1", "shift=abc", "shift=5k", "shift=,sleep=off", "align=on",
    "shift=1,align=on,sleep=off", "rr=record", "shift=1,rr=bad", "rr=off",
    "shift=1,foo=1", "shift=1,sleep=maybe", "shift=2,align=maybe",
    # accepted
    "shift=0x3", "shift=010", "3", "shift= 5", "shift=10", "sleep=off", "",
    "shift=2,shift=3", "shift=2,align=on", "shift=auto", "shift=auto,sleep=off",
    "shift=2,rr=record,rrfile=x",
])
def test_option_errors_as_qemu(tmp_path: Path, option: str) -> None:
    """The same -icount strings are refused with QEMU's message, or accepted (QEMU then
    fails on the missing kernel instead)."""
    exe = require_tool("qemu-system-aarch64")
    proc = subprocess.run([exe, "-M", "virt", "-nodefaults", "-display", "none", "-icount",
                           option, "-kernel", str(tmp_path / "none")],
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
                          check=False, cwd=tmp_path)  # (rrfile=x is created there)
    line = proc.stderr.decode().strip().splitlines()[-1]
    prefix = f"qemu-system-aarch64: -icount {option}: "
    try:
        opts = qemuopts.parse(option, implied="shift", stop_at_help=False)
        icount_configure(opts.as_dict())
    except (IcountError, qemuopts.QemuOptsError) as exc:
        if "not supported by pyqemu" in str(exc):  # QEMU has it: refused plainly here
            assert "could not load kernel" in line, line
        else:
            assert line == prefix + str(exc)
    else:
        assert "could not load kernel" in line, line


def test_shift_values() -> None:
    """strtol's bases, as QEMU reads shift."""
    assert icount_configure({"shift": "0x3"}) == IcountConfig(3)
    assert icount_configure({"shift": "010"}) == IcountConfig(8)
    assert icount_configure({"shift": "2", "sleep": "off"}) == IcountConfig(2, sleep=False)
    assert icount_configure({"sleep": "off"}) is None


# ------------------------------------------------------------ a Linux boot under load


def _busy() -> None:  # pragma: no cover - runs in a child process
    while True:
        pass


@pytest.mark.slow
def test_linux_boot_keeps_virtual_time_under_load() -> None:
    """Debian's arm64 kernel boots to /init under ``-icount shift=7,sleep=off`` while the
    host is loaded (one busy process per core): the kernel's clock at "Run /init" is the
    instructions it executed, so it is close to QEMU's under the same -icount (the guest
    code differs slightly: CPU features, device timing), whatever the host's speed, and
    no soft-lockup or RCU-stall report appears (with host time as the clock, a guest
    running ~100x slower than QEMU on a loaded host can spend its time in timer
    interrupts)."""
    import multiprocessing
    import re
    import threading

    from pyqemu.hw.char import BufferBackend
    from pyqemu.testing import guest_images
    from pyqemu.testing.guest_run import GuestMachine, virt_argv
    from tests.machine.virtboard import build

    try:
        kernel = guest_images.debian_kernel()
        initrd = guest_images.build_initramfs()
    except guest_images.GuestImageError as exc:
        pytest.skip(f"guest images: {exc}")
    require_tool("qemu-system-aarch64")
    icount = "shift=7,sleep=off"
    marker = re.compile(r"\[\s*(\d+\.\d+)\] Run /init as init process")
    with GuestMachine(virt_argv("qemu", kernel, initrd, quiet=False,
                                extra=["-icount", icount])) as m:
        m.wait_for(guest_images.INIT_MARKER, 300)
        found = marker.search(m.output)
    assert found, "QEMU: no 'Run /init' line"
    theirs = float(found.group(1))

    cfg = config(mem=512 << 20, props={"gic-version": "3"}, kernel=str(kernel),
                 initrd=str(initrd), append="console=ttyAMA0",
                 icount=icount_configure({"shift": "7", "sleep": "off"}))
    console = BufferBackend()
    cfg.chardevs["serial0"] = console
    cfg.serials = ["serial0"]
    vm, _board = build(cfg)
    loaders = [multiprocessing.Process(target=_busy, daemon=True)
               for _ in range(os.cpu_count() or 1)]
    for p in loaders:
        p.start()
    loop = threading.Thread(target=vm.run_main_loop, daemon=True)
    try:
        vm.start()
        loop.start()
        deadline = time.monotonic() + 3600
        while guest_images.INIT_MARKER.encode() not in bytes(console.data):
            assert time.monotonic() < deadline, bytes(console.data)[-2000:].decode()
            time.sleep(1)
    finally:
        for p in loaders:
            p.kill()
        vm.main_loop.call_soon(vm.quit)
        loop.join(30)
    text = bytes(console.data).decode(errors="replace")
    found = marker.search(text)
    assert found, text[-2000:]
    ours = float(found.group(1))
    assert abs(ours - theirs) <= 0.15 * theirs, (ours, theirs)
    for bad in ("soft lockup", "rcu_preempt self-detected stall", "rcu: INFO",
                "hrtimer: interrupt took"):
        assert bad not in text, bad


def test_smp2_each_cpu_takes_its_timer(tmp_path: Path) -> None:
    """-smp 2 under -icount: CPU 1 (PSCI CPU_ON) and CPU 0 each arm their virtual timer
    and take PPI 27; the idle warp waits until both CPUs idle (QEMU gives the same
    results under the same option)."""
    from tests.hw.timer.gtprobe import BASE as PROBE_BASE
    from tests.hw.timer.gtprobe import RES, STACK, VECTORS_OFF
    from tests.hw.timer.test_gtimer_oracle import SMP_BODY, SMP_HANDLER

    body = (SMP_BODY.replace("{VECTORS}", f"{PROBE_BASE + VECTORS_OFF:#x}")
            .replace("SECOND_DONE", f"{RES + 0x8000:#x}")
            .replace("SECOND_RES", f"{RES + 0x8100:#x}")
            .replace("SECOND_STACK", f"{STACK - 0x8000:#x}"))
    elf, _ = build(tmp_path, program(body + "\n" + SMP_HANDLER, "irq_handler"))
    exe = require_tool("qemu-system-aarch64")
    proc = subprocess.run(
        [exe, "-M", "virt,gic-version=3", "-cpu", "cortex-a72", "-m", "128M", "-smp", "2",
         "-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none",
         "-no-reboot", "-icount", "shift=4,sleep=off", "-kernel", str(elf)],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=True)
    theirs = results(proc.stdout.decode())
    cfg = config(smp=2, cpu="cortex-a72", mem=128 << 20, kernel=str(elf),
                 props={"gic-version": "3"}, icount=IcountConfig(4, sleep=False))
    status, out, _vm = run_board(cfg, timeout=120)
    assert status == 0
    assert theirs == [0, 27, 5, 1, 1, 27, 5, 1, 1], theirs
    assert results(out.decode()) == theirs


AUTO_BODY = """
    mrs x1, cntvct_el0
    ldr x5, =125000000          // 2 s of virtual time
1:  mrs x2, cntvct_el0
    sub x3, x2, x1
    cmp x3, x5
    b.lo 1b
    mov x1, #1
    rec x1
"""


def test_shift_auto_follows_host_time(tmp_path: Path) -> None:
    """shift=auto: a guest spinning on CNTVCT until 2 s of virtual time have passed
    finishes in a few host seconds, as its clock is steered towards host time. A fixed
    shift=3 (auto's start: 8 ns per instruction) would need some 250 million guest
    instructions, several minutes of pyqemu, and shift=10 (its limit) under 2 s."""
    elf, _ = build(tmp_path, program(AUTO_BODY))
    out, wall = _pyqemu(elf, "shift=auto")
    assert out == [1]
    assert 1.0 < wall < 20.0, wall
