"""pyqemu-system-aarch64's command line against qemu-system-aarch64 7.2: the same argv
must give the same exit status and the same stderr (program name normalised), whether
QEMU refuses it or accepts it (then it must start, and so must pyqemu's configuration).
"""

from __future__ import annotations

import pathlib
import shlex

import pytest
from sysoracle import close_built, make_image, normalise, pyqemu_outcome, qemu_outcome

#: command lines QEMU refuses, each with one mistake
BAD = [
    "-foo", "--foo", "-m", "-m foo", "-m -1", "-m 0.5", "-m size=1G,foo=1",
    "-m 1G,slots=2", "-m 1G,maxmem=512M", "-m 1G,slots=2,maxmem=1G",
    "-smp cpus=3,sockets=2", "-smp foo=1", "-smp 2,maxcpus=1", "-smp 4,sockets=2,cores=3",
    "-smp 2,dies=2", "-smp 600", "-smp foo", "-smp 2,sockets=x",
    "-machine foo", "-M virt,foo=bar", "-M virt,highmem=maybe",
    "-cpu foo", "-cpu cortex-m3", "-cpu help,foo", "-cpu cortex-a53,foo=on",
    "-accel kvm", "-accel foo", "-enable-kvm", "-M virt,accel=kvm",
    "-accel tcg,foo=1", "-accel tcg,thread=bogus", "-accel tcg,tb-size=x",
    "-accel tcg -M virt,accel=tcg",
    "-drive file=/nonexist", "-drive foo=bar", "-drive file=plain.raw,if=bogus",
    "-drive file=plain.raw,cache=bogus", "-drive file=plain.raw,if=none,foo=bar",
    "-drive file=disk.qcow2,if=none,foo=bar", "-drive file=plain.raw,if=none,format=qcow2",
    "-drive file=plain.raw,if=none,format=bogus", "-drive file=plain.raw,if=none,discard=x",
    "-drive file=plain.raw,if=none,media=bogus", "-drive file=plain.raw,if=none,aio=bogus",
    "-drive file=plain.raw,if=none,aio=native",
    "-drive file=plain.raw,if=none,index=1,unit=2",
    "-drive file=plain.raw,format=raw,if=none,readonly=maybe",
    "-drive file=plain.raw,format=raw,if=none,snapshot=maybe",
    "-drive file=plain.raw,format=raw,if=none,index=x",
    "-drive file=plain.raw,if=none,werror=bogus",
    "-drive format=raw,if=none", "-drive if=none,id=a -drive if=none,id=a",
    "-drive file=plain.raw,format=raw,if=pflash -drive file=plain.raw,format=raw,if=pflash,index=0",
    "-pflash /nonexist", "-sd /nonexist", "-cdrom /nonexist", "-hda /nonexist",
    "-mtdblock /nonexist", "/nonexist",
    "-blockdev driver=file,filename=/nonexist,node-name=a", "-blockdev foo",
    "-blockdev driver=file,filename=plain.raw",
    ("-blockdev driver=file,filename=plain.raw,node-name=f0 "
     "-blockdev driver=raw,file=f0,node-name=f0"),
    "-blockdev driver=raw,file=nope,node-name=r", "-blockdev driver=file,node-name=f",
    "-blockdev driver=qcow2,file.driver=file,file.filename=plain.raw,node-name=q",
    "-blockdev driver=file,filename=plain.raw,node-name=f,foo=1",
    "-blockdev driver=file,filename=plain.raw,node-name=f,read-only=maybe",
    "-blockdev driver=file,filename=plain.raw,node-name=1f",
    "-serial bogus", "-serial stdio -serial stdio", "-serial unix:/nonexist/x",
    "-serial tcp:127.0.0.1:1", "-serial file:", "-serial chardev:nope",
    "-chardev bogus,id=x", "-chardev socket,id=x", "-chardev stdio", "-chardev file,id=a",
    "-chardev file,id=a,path=/nonexist/x", "-chardev socket,id=a,path=/nonexist/x",
    "-chardev socket,id=a,path=/nonexist/x,server=on", "-chardev socket,id=a,host=127.0.0.1",
    "-chardev socket,id=a,host=127.0.0.1,port=1", "-chardev null,id=a,foo=1",
    "-chardev null,id=a -chardev null,id=a", "-chardev stdio,id=a -chardev stdio,id=b",
    "-chardev null,id=a,mux=maybe", "-chardev ringbuf,id=a,size=1000",
    "-chardev socket,id=a,path=sock,server=on,wait=off,reconnect=1",
    "-monitor foo", "-qmp foo", "-mon foo", "-mon chardev=zz,mode=bogus",
    "-chardev null,id=a -mon chardev=a,mode=bogus",
    "-daemonize -nographic", "-chardev stdio,id=a -daemonize",
    "-uuid xyz", "-name a,b=c", "-append x", "-initrd x",
    "-display foo", "-D /nonexist/x", "-pidfile /nonexist/x",
    "-boot order=z", "-boot menu=maybe", "-boot foo=bar", "-boot foo",
    "-d foo",
    # absurd -m / -smp: QEMU's uint64 parsing, 32-bit truncation and RAM allocation order
    "-m 99999999999999", "-m 4097T", "-m 1E", "-m 16E", "-m 4097T -cpu cortex-m3",
    "-m 4097T -device foo", "-m 0x10M -smp 600", "-m 1G,slots=300,maxmem=2G",
    "-m 1G,slots=300,maxmem=2G -cpu cortex-m3", "-smp 99999999999999999999", "-smp -1",
    "-smp cpus=2,maxcpus=99999999999", "-smp 2,sockets=-1", "-smp 2147483648",
]

#: command lines QEMU accepts (the virt board's part is not checked here)
GOOD = [
    "", "-m 1G", "-m 512", "-m 1G,slots=2,maxmem=2G", "-smp 4", "-smp 0", "-smp 8,maxcpus=8",
    "-smp 2,clusters=2", "-smp sockets=2,cores=2", "-cpu max", "-cpu cortex-a57",
    "-accel tcg", "-accel tcg,thread=single", "-M virt,accel=kvm:tcg",
    "-drive file=plain.raw,if=none", "-drive file=plain.raw,if=none,readonly=on",
    "-drive file=plain.raw,if=none,snapshot=on", "-drive file=disk.qcow2,if=none,id=d0",
    "-drive file=plain.raw,if=none,cache=none", "-drive file=plain.raw,if=none,aio=io_uring",
    "-drive if=none", "-drive file=plain.raw,if=none,media=cdrom,readonly=off",
    "-drive file=plain.raw,format=raw,if=none,cache.direct=on,cache.no-flush=on",
    "-blockdev driver=file,filename=plain.raw,node-name=f0",
    ["-blockdev", '{"driver":"file","filename":"plain.raw","node-name":"f"}'],
    "-chardev null,id=n0 -chardev ringbuf,id=r0 -chardev file,id=f0,path=out.txt",
    "-chardev socket,id=s0,path=s0.sock,server=on,wait=off",
    "-serial null -serial none -serial null", "-nodefaults -serial null -monitor none",
    "-uuid 12345678-1234-1234-1234-123456789abc", "-name guest=g,process=p", "-k en-us",
    "-boot order=c,menu=on", "-no-reboot -no-shutdown -snapshot", "-d int,guest_errors",
    "-rtc base=utc", "-no-user-config",
    "-m 0x10", "-m 0x10M", "-m 0x1f", "-smp 010", "-smp 0x4", "-m 1G,slots=256,maxmem=2G",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from tests.conftest import require_tool

    qemu_img = require_tool("qemu-img")
    d = tmp_path_factory.mktemp("sysoracle")
    make_image(qemu_img, d / "plain.raw", "raw", "64K")
    make_image(qemu_img, d / "disk.qcow2", "qcow2", "1M")
    return d


def _compare(args: str | list[str], workdir: pathlib.Path) -> None:
    argv = shlex.split(args) if isinstance(args, str) else args
    theirs = qemu_outcome(argv, str(workdir))
    ours = pyqemu_outcome(argv, str(workdir))
    try:
        assert (ours.rc, normalise(ours.stderr)) == (theirs.rc, theirs.stderr), args
        assert ours.stdout == theirs.stdout, args
    finally:
        close_built(ours)


@pytest.mark.parametrize("args", BAD)
def test_bad_command_line_as_qemu(args: str, workdir: pathlib.Path, qemu_system: str) -> None:
    _compare(args, workdir)


@pytest.mark.parametrize("args", GOOD)
def test_good_command_line_as_qemu(args: str | list[str], workdir: pathlib.Path,
                                   qemu_system: str) -> None:
    _compare(args, workdir)


def test_no_machine_as_qemu(workdir: pathlib.Path, qemu_system: str) -> None:
    theirs = qemu_outcome([], str(workdir), base=["-display", "none"])
    ours = pyqemu_outcome([], str(workdir), base=["-display", "none"])
    assert (ours.rc, normalise(ours.stderr)) == (theirs.rc, theirs.stderr)
