"""pyqemu.testing.guest_images against real tools: GNU cpio reads our newc archives, kmod's
modinfo/depmod agree with our module metadata and dependency order, busybox's sh parses
the generated /init. (tests/system/ boots the result under qemu-system-aarch64.)"""

from __future__ import annotations

import gzip
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from pyqemu.testing import guest_images as gi
from pyqemu.testing.guest_images import CpioEntry
from tests.conftest import require_tool


@pytest.fixture(scope="module")
def kernel() -> gi.DebianKernel:
    try:
        return gi.debian_kernel_package()
    except gi.GuestImageError as exc:
        pytest.skip(f"Debian arm64 kernel unavailable: {exc}")


def _entries() -> list[CpioEntry]:
    return [
        CpioEntry("d", gi.S_IFDIR | 0o755),
        CpioEntry("d/sub", gi.S_IFDIR | 0o700),
        # names and sizes that exercise every padding remainder of the 4-byte alignment
        *(CpioEntry(f"d/sub/{'f' * n}", gi.S_IFREG | 0o644, bytes(range(n * 7 % 256)) * n)
          for n in range(1, 6)),
        CpioEntry("d/empty", gi.S_IFREG | 0o600, b""),
        CpioEntry("d/run.sh", gi.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
        CpioEntry("d/link", gi.S_IFLNK | 0o777, b"sub/fff"),
        CpioEntry("console", gi.S_IFCHR | 0o600, rdev=(5, 1)),
    ]


def test_newc_archive_read_by_gnu_cpio(tmp_path: Path) -> None:
    cpio = require_tool("cpio")
    archive = gi.newc_archive(_entries())
    listing = subprocess.run([cpio, "-itv", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode()
    names = [ln.split()[-1] if " -> " not in ln else ln.split()[-3]
             for ln in listing.splitlines()]
    assert names == [e.name for e in _entries()]
    console = next(ln for ln in listing.splitlines() if ln.endswith(" console"))
    assert console.startswith("crw-------") and re.search(r"\b5,\s+1\b", console), console

    out = tmp_path / "x"
    out.mkdir()
    regular = gi.newc_archive([e for e in _entries() if e.name != "console"])
    subprocess.run([cpio, "-idm", "--quiet", "--no-absolute-filenames"], input=regular,
                   cwd=out, check=True)
    for e in _entries():
        if e.name == "console":
            continue
        p = out / e.name
        st = p.lstat()
        assert stat.S_IFMT(st.st_mode) == stat.S_IFMT(e.mode), e.name
        if stat.S_ISLNK(e.mode):
            assert os.readlink(p) == e.data.decode()
        else:
            assert stat.S_IMODE(st.st_mode) == e.mode & 0o7777, e.name
        if stat.S_ISREG(e.mode):
            assert p.read_bytes() == e.data, e.name


def test_modinfo_matches_kmod(kernel: gi.DebianKernel) -> None:
    modinfo = require_tool("modinfo")
    for path in gi.resolve_modules(gi.DEFAULT_MODULES, kernel.modules_dir):
        ours = gi.modinfo(path.read_bytes())
        for key in ("depends", "softdep", "name", "vermagic"):
            ref = subprocess.run([modinfo, "-F", key, str(path)], capture_output=True,
                                 text=True, check=True).stdout.splitlines()
            assert ours.get(key, []) == ref or (ref == [""] and ours.get(key) in ([], [""], None)), \
                (path.name, key)


def _depmod_graph(kernel: gi.DebianKernel) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    depmod = require_tool("depmod")
    out = subprocess.run([depmod, "-n", "-b", str(kernel.root), kernel.version],
                         capture_output=True, text=True, check=True).stdout
    deps: dict[str, list[str]] = {}
    softdeps: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"^(kernel/\S+\.ko\S*):(.*)$", line)
        if m:
            deps[m.group(1)] = m.group(2).split()
        m = re.match(r"^softdep (\S+) pre: (.*?)(?: post:.*)?$", line)
        if m:
            softdeps[m.group(1)] = m.group(2).split()
    return deps, softdeps


def test_module_order_matches_depmod(kernel: gi.DebianKernel) -> None:
    """Every module's modules.dep closure (depmod's) is loaded before it, nothing extra
    except the soft pre-dependencies (which depmod lists in modules.softdep)."""
    deps, softdeps = _depmod_graph(kernel)
    order = [str(p.relative_to(kernel.modules_dir)) for p in
             gi.resolve_modules(gi.DEFAULT_MODULES, kernel.modules_dir)]
    assert len(order) == len(set(order))
    expected: set[str] = set()
    for i, mod in enumerate(order):
        for dep in deps[mod]:
            assert dep in order[:i], f"{dep} must load before {mod}"
        expected.add(mod)
        expected.update(deps[mod])
    extra = set(order) - expected
    soft_names = {n for v in softdeps.values() for n in v}
    for mod in extra:  # only modules providing a soft dependency (crc32c for ext4)
        aliases = gi.modinfo((kernel.modules_dir / mod).read_bytes()).get("alias", [])
        assert soft_names & set(aliases), mod
    for name in gi.DEFAULT_MODULES:
        assert any(Path(m).name.split(".ko")[0] == name for m in order), name


def test_strip_module_signature_as_kmod_sees_it(kernel: gi.DebianKernel,
                                                tmp_path: Path) -> None:
    """kmod's modinfo finds a signer in Debian's module and none after stripping; the
    module's own metadata is unchanged."""
    modinfo = require_tool("modinfo")
    src = gi.resolve_modules(["crc16"], kernel.modules_dir)[0]
    stripped = tmp_path / "crc16.ko"
    stripped.write_bytes(gi.strip_module_signature(src.read_bytes()))

    def field(path: Path, key: str) -> str:
        return subprocess.run([modinfo, "-F", key, str(path)], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert field(src, "signer") != ""
    assert field(stripped, "signer") == ""
    for key in ("name", "vermagic", "license"):
        assert field(stripped, key) == field(src, key)
    assert gi.strip_module_signature(stripped.read_bytes()) == stripped.read_bytes()
    with pytest.raises(gi.GuestImageError, match="malformed signature"):
        gi.strip_module_signature(b"\0" * 8 + b"\xff" * 4 + gi._MODULE_SIG_MAGIC)


def test_unknown_module_is_a_clear_error(kernel: gi.DebianKernel) -> None:
    with pytest.raises(gi.GuestImageError, match="module no_such_mod not in"):
        gi.resolve_modules(["no_such_mod"], kernel.modules_dir)
    with pytest.raises(gi.GuestImageError, match="module no_such_mod not in"):
        gi.build_initramfs(modules=["virtio_blk", "no_such_mod"])


def test_modinfo_rejects_non_elf() -> None:
    with pytest.raises(gi.GuestImageError, match="not a little-endian ELF64"):
        gi.modinfo(b"garbage" * 20)


def test_initramfs_layout(kernel: gi.DebianKernel, tmp_path: Path) -> None:
    """The archive holds busybox, /init, the modules in dependency order, the scripts and
    extra files; busybox's own sh parses /init and every script (sh -n)."""
    cpio = require_tool("cpio")
    qemu_user = require_tool("qemu-aarch64")
    path = gi.build_initramfs(modules=["virtio_net"], init_script="echo default\n",
                              scripts={"other": "echo other\n"},
                              extra_files={"/usr/share/x.txt": "payload\n",
                                           "bin/tool": "#!/bin/sh\necho t\n"},
                              out=tmp_path / "initrd.gz")
    data = gzip.decompress(path.read_bytes())
    subprocess.run([cpio, "-idm", "--quiet", "--no-absolute-filenames", "--nonmatching",
                    "dev/console"], input=data, cwd=tmp_path, check=True)
    busybox = gi.busybox_static()
    assert (tmp_path / "bin/busybox").read_bytes() == busybox.read_bytes()
    assert os.readlink(tmp_path / "bin/sh") == "busybox"
    modules = (tmp_path / "etc/pyqemu/modules").read_text().split()
    assert modules == ["failover.ko", "net_failover.ko", "virtio_net.ko"]
    for name in modules:
        assert gi.modinfo((tmp_path / "lib/modules" / name).read_bytes())["name"] == \
            [name.removesuffix(".ko")]
    assert (tmp_path / "etc/pyqemu/default.sh").read_text() == "echo default\n"
    assert (tmp_path / "etc/pyqemu/other.sh").read_text() == "echo other\n"
    assert (tmp_path / "usr/share/x.txt").read_text() == "payload\n"
    assert os.access(tmp_path / "bin/tool", os.X_OK)
    init = tmp_path / "init"
    assert os.access(init, os.X_OK)
    assert gi.INIT_MARKER in init.read_text()
    for script in (init, tmp_path / "etc/pyqemu/default.sh"):
        res = subprocess.run([qemu_user, str(busybox), "sh", "-n", str(script)],
                             capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
    # cached by content: the same request gives the same bytes
    again = gi.build_initramfs(modules=["virtio_net"], init_script="echo default\n",
                               scripts={"other": "echo other\n"},
                               extra_files={"/usr/share/x.txt": "payload\n",
                                            "bin/tool": "#!/bin/sh\necho t\n"})
    assert again.read_bytes() == path.read_bytes()
