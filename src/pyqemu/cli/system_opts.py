"""The option table of ``pyqemu-system-aarch64`` and its help text.

QEMU 7.2's qemu-options.hx defines every option of qemu-system-aarch64 with a flag
saying whether it takes an argument; :data:`QEMU_OPTIONS` holds that table (the names
QEMU knows, so "-vnc" is "not supported by pyqemu" rather than "invalid option"), and
:data:`SUPPORTED` the ones pyqemu implements. :func:`help_text` is our ``-h``: QEMU's
layout, listing only what pyqemu implements.
"""

from __future__ import annotations

__all__ = ["QEMU_OPTIONS", "SUPPORTED", "help_text"]

#: option name -> takes an argument (QEMU 7.2, the options qemu-system-aarch64 accepts)
QEMU_OPTIONS: dict[str, bool] = {
    # standard
    "h": False, "help": False, "version": False, "machine": True, "M": True, "cpu": True,
    "accel": True, "smp": True, "numa": True, "add-fd": True, "set": True, "global": True,
    "boot": True, "m": True, "mem-path": True, "mem-prealloc": False, "k": True,
    "audio-help": False, "audiodev": True, "audio": True, "device": True, "name": True,
    "uuid": True,
    # block
    "fda": True, "fdb": True, "hda": True, "hdb": True, "hdc": True, "hdd": True,
    "cdrom": True, "blockdev": True, "drive": True, "mtdblock": True, "sd": True,
    "pflash": True, "snapshot": False, "fsdev": True, "virtfs": True, "iscsi": True,
    # usb / display
    "usb": False, "usbdevice": True, "display": True, "nographic": False, "portrait": False,
    "rotate": True, "vga": True, "full-screen": False, "g": True, "vnc": True,
    "spice": True,
    # network
    "nic": True, "netdev": True, "net": True,
    # character devices
    "chardev": True,
    # tpm
    "tpmdev": True,
    # boot
    "bios": True, "kernel": True, "append": True, "initrd": True, "dtb": True,
    # debug / expert
    "fw_cfg": True, "serial": True, "parallel": True, "monitor": True, "qmp": True,
    "qmp-pretty": True, "mon": True, "debugcon": True, "pidfile": True, "singlestep": False,
    "preconfig": False, "S": False, "overcommit": True, "gdb": True, "s": False,
    "d": True, "D": True, "dfilter": True, "seed": True, "L": True, "enable-kvm": False,
    "xen-domid": True, "xen-attach": False, "xen-domid-restrict": False,
    "no-reboot": False, "no-shutdown": False, "action": True, "watchdog-action": True,
    "echr": True, "incoming": True, "only-migratable": False, "nodefaults": False,
    "chroot": True, "runas": True, "daemonize": False, "loadvm": True, "semihosting": False,
    "semihosting-config": True, "old-param": False, "readconfig": True, "no-user-config": False,
    "nouserconfig": False, "trace": True, "plugin": True, "enable-sync-profile": False,
    "dump-vmstate": True, "icount": True, "rtc": True, "option-rom": True, "sandbox": True,
    "object": True, "msg": True, "compat": True, "async-teardown": False, "smbios": True,
    "acpitable": True, "no-acpi": False, "win2k-hack": False, "no-hpet": False,
}

#: what pyqemu implements (the rest is refused as "not supported by pyqemu")
SUPPORTED = frozenset({
    "h", "help", "version", "machine", "M", "cpu", "accel", "smp", "boot", "m", "k",
    "device", "name", "uuid", "hda", "hdb", "hdc", "hdd", "cdrom", "blockdev", "drive",
    "mtdblock", "sd", "pflash", "snapshot", "display", "nographic", "nic", "netdev", "net",
    "chardev", "bios", "kernel", "append", "initrd", "dtb", "serial", "parallel", "monitor",
    "qmp", "qmp-pretty", "mon", "pidfile", "S", "d", "D", "seed", "L", "enable-kvm",
    "no-reboot", "no-shutdown", "nodefaults", "daemonize", "no-user-config", "nouserconfig",
    "rtc", "msg", "no-acpi", "icount",
})

#: (option synopsis, description lines) per heading, in QEMU's order
_HELP: list[tuple[str, list[tuple[str, list[str]]]]] = [
    ("Standard options:", [
        ("-h or -help", ["display this help and exit"]),
        ("-version", ["display version information and exit"]),
        ("-machine [type=]name[,prop[=value][,...]]",
         ["selects emulated machine ('-machine help' for list)",
          "property accel=accel1[:accel2[:...]] selects accelerator"]),
        ("-cpu cpu", ["select CPU ('-cpu help' for list)"]),
        ("-accel [accel=]accelerator[,prop[=value][,...]]",
         ["select accelerator (tcg; use 'help' for a list)",
          "backend=python|llvm|interp selects pyqemu's TCG code generator"]),
        ("-smp [[cpus=]n][,maxcpus=maxcpus][,sockets=sockets][,dies=dies]"
         + "[,clusters=clusters][,cores=cores][,threads=threads]",
         ["set the number of initial CPUs to 'n' [default=1]",
          "maxcpus= maximum number of total CPUs",
          "sockets/dies/clusters/cores/threads: the CPU topology"]),
        ("-boot [order=drives][,once=drives][,menu=on|off]",
         ["boot order (the virt board boots -kernel or the firmware)"]),
        ("-m [size=]megs[,slots=n,maxmem=size]", ["configure guest RAM"]),
        ("-k language", ["use keyboard layout (accepted; no graphical display)"]),
        ("-device driver[,prop[=value][,...]]",
         ["add device (based on driver)", "use '-device help' to print all possible drivers",
          "use '-device driver,help' to print all possible properties"]),
        ("-name string1[,process=string2][,debug-threads=on|off]",
         ["set the name of the guest"]),
        ("-uuid %08x-%04x-%04x-%04x-%012x", ["specify machine UUID"]),
    ]),
    ("Block device options:", [
        ("-hda/-hdb file", ["use 'file' as hard disk 0/1 image"]),
        ("-hdc/-hdd file", ["use 'file' as hard disk 2/3 image"]),
        ("-cdrom file", ["use 'file' as CD-ROM image"]),
        ("-blockdev [driver=]driver[,node-name=N][,discard=ignore|unmap]",
         ["[,cache.direct=on|off][,cache.no-flush=on|off][,read-only=on|off]",
          "configure a block backend (drivers: file, raw, qcow2, vmdk, vdi, vhdx, vpc)"]),
        ("-drive [file=file][,if=type][,bus=n][,unit=m][,media=d][,index=i]",
         ["[,cache=writethrough|writeback|none|directsync|unsafe][,format=f]",
          "[,snapshot=on|off][,aio=threads|native|io_uring]",
          "[,readonly=on|off][,discard=ignore|unmap][,id=name]",
          "use 'file' as a drive image"]),
        ("-mtdblock file", ["use 'file' as on-board Flash memory image"]),
        ("-sd file", ["use 'file' as SecureDigital card image"]),
        ("-pflash file", ["use 'file' as a parallel flash image"]),
        ("-snapshot", ["write to temporary files instead of disk image files"]),
    ]),
    ("Display options:", [
        ("-display none", ["select display backend type (pyqemu has 'none' only)"]),
        ("-nographic", ["disable graphical output and redirect serial I/Os to console"]),
    ]),
    ("Network options:", [
        ("-netdev socket,id=str[,fd=h][,listen=[host]:port][,connect=host:port]",
         ["configure a network backend to connect to another network"]),
        ("-netdev stream,id=str[,server=on|off],addr.type=inet|unix,...",
         ["configure a network backend to connect to another network using a socket",
          "connection in stream mode"]),
        ("-netdev tap,id=str[,ifname=name][,script=file][,downscript=dfile]",
         ["configure a host TAP network backend"]),
        ("-nic [tap|socket|stream|none][,option][,...][,mac=macaddr][,model=mn]",
         ["initialize an on-board / default host NIC and connect it to a backend"]),
    ]),
    ("Character device options:", [
        ("-chardev help", []),
        ("-chardev null,id=id[,mux=on|off]", []),
        ("-chardev socket,id=id[,host=host],port=port[,ipv4=on|off][,ipv6=on|off]"
         + "[,nodelay=on|off][,server=on|off][,wait=on|off][,telnet=on|off][,mux=on|off]",
         []),
        ("-chardev socket,id=id,path=path[,server=on|off][,wait=on|off][,mux=on|off]"
         + "[,abstract=on|off][,tight=on|off]", []),
        ("-chardev file,id=id,path=path[,input-path=path][,append=on|off][,mux=on|off]", []),
        ("-chardev pty,id=id[,mux=on|off]", []),
        ("-chardev stdio,id=id[,mux=on|off][,signal=on|off]", []),
        ("-chardev ringbuf,id=id[,size=size]", []),
    ]),
    ("Boot Image or Kernel specific:", [
        ("-bios file", ["set the filename for the BIOS"]),
        ("-kernel bzImage", ["use 'bzImage' as kernel image"]),
        ("-append cmdline", ["use 'cmdline' as kernel command line"]),
        ("-initrd file", ["use 'file' as initial ram disk"]),
        ("-dtb file", ["use 'file' as device tree image"]),
    ]),
    ("Debug/Expert options:", [
        ("-serial dev", ["redirect the serial port to char device 'dev'"]),
        ("-parallel dev", ["redirect the parallel port to char device 'dev'"]),
        ("-monitor dev", ["redirect the monitor to char device 'dev'"]),
        ("-qmp dev", ["like -monitor but opens in 'control' mode"]),
        ("-qmp-pretty dev", ["like -qmp but uses pretty JSON formatting"]),
        ("-mon [chardev=]name[,mode=readline|control][,pretty[=on|off]]", []),
        ("-pidfile file", ["write PID to 'file'"]),
        ("-S", ["freeze CPU at startup (use 'c' to start execution)"]),
        ("-d item1,...", ["enable logging of specified items",
                          "(use '-d help' for a list of log items)"]),
        ("-D logfile", ["output log to logfile (default stderr)"]),
        ("-L path", ["set the directory for the BIOS, VGA BIOS and keymaps"]),
        ("-no-reboot", ["exit instead of rebooting"]),
        ("-no-shutdown", ["stop before shutdown"]),
        ("-nodefaults", ["don't create default devices"]),
        ("-daemonize", ["daemonize QEMU after initializing"]),
    ]),
]


def help_text(prog: str, version_line: str) -> str:
    """Our ``-h`` (QEMU's layout: synopsis, then 16-column indented descriptions)."""
    out = [version_line.rstrip("\n"), f"usage: {prog} [options] [disk_image]", "",
           "'disk_image' is a raw hard disk image for IDE hard disk 0", ""]
    for heading, rows in _HELP:
        out.append(heading)
        for synopsis, lines in rows:
            if lines and len(synopsis) < 16:
                out.append(f"{synopsis:<16}{lines[0]}")
                rest = lines[1:]
            else:
                out.append(synopsis)
                rest = lines
            out.extend(" " * 16 + line for line in rest)
        out.append("")
    out += ["During emulation, the following keys are useful:",
            "When using -nographic, press 'ctrl-a h' to get some help.", "",
            "pyqemu: a QEMU 7.2 compatible emulator in Python; options not listed",
            "here are refused.", ""]
    return "\n".join(out)
