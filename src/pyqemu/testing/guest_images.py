"""Guest fixtures for system-mode tests and benchmarks: Debian's arm64 kernel and a busybox initramfs.

Everything comes from Debian packages fetched with ``apt-get download`` (the host needs
``dpkg --add-architecture arm64 && apt-get update``, done by scripts/setup.sh) and unpacked
with ``dpkg-deb -x`` into a cache directory (``$PYQEMU_CACHE``, else ``$PYQEMU_TEST_CACHE``,
else ``~/.cache/pyqemu-tests``). No other network access.

- :func:`debian_kernel` — the arm64 ``Image`` of the versioned package that
  ``linux-image-arm64:arm64`` depends on; :func:`kernel_modules_dir` — its modules.
- :func:`build_initramfs` — a gzip-compressed newc cpio archive, written here in Python,
  holding busybox-static, an ``/init`` busybox script, and the requested kernel modules with
  their dependencies (read from each module's ``.modinfo`` section, as depmod would), which
  ``/init`` insmods in dependency order.

The ``/init`` protocol (what tests and bench/run_system.py rely on):

1. mounts proc, sysfs, devtmpfs; insmods the modules (``PYQEMU-INSMOD-FAIL <name>`` on error);
2. prints :data:`INIT_MARKER` (``PYQEMU-INIT-OK``) on the console;
3. runs the script named by ``pyqemu.script=<name>`` on the kernel command line (one of the
   ``scripts`` given to :func:`build_initramfs`), else the baked-in ``init_script``;
4. prints ``PYQEMU-TEST-DONE rc=<status>`` (:data:`DONE_MARKER`) and runs ``poweroff -f``
   (``pyqemu.halt=reboot`` makes it ``reboot -f``; ``pyqemu.halt=none`` sleeps forever).

Errors: :class:`GuestImageError` (download impossible, package layout unexpected, a module
missing); tests turn it into a skip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import gzip
import hashlib
import json
import lzma
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

__all__ = [
    "DEFAULT_MODULES",
    "DONE_MARKER",
    "INIT_MARKER",
    "CpioEntry",
    "DebianKernel",
    "GuestImageError",
    "build_initramfs",
    "busybox_static",
    "cache_dir",
    "debian_kernel",
    "debian_kernel_package",
    "kernel_modules_dir",
    "modinfo",
    "newc_archive",
    "resolve_modules",
    "strip_module_signature",
]

INIT_MARKER = "PYQEMU-INIT-OK"
DONE_MARKER = "PYQEMU-TEST-DONE"

#: The modules every boot test needs: virtio-mmio transport, block, net, rng, console, and
#: ext4 (which mounts the ext2 file system busybox's mke2fs makes).
DEFAULT_MODULES: tuple[str, ...] = (
    "virtio_mmio", "virtio_blk", "virtio_net", "virtio-rng", "virtio_console", "ext4")

#: Bumped whenever the archive layout or /init changes (part of the initramfs cache key).
_LAYOUT_VERSION = 1

_KERNEL_META = "linux-image-arm64:arm64"
_BUSYBOX_PKG = "busybox-static:arm64"


class GuestImageError(Exception):
    """A guest fixture cannot be obtained or built (no apt, no arm64 arch, bad package)."""


def cache_dir() -> Path:
    """The fixture cache directory (created)."""
    env = os.environ.get("PYQEMU_CACHE") or os.environ.get("PYQEMU_TEST_CACHE")
    d = Path(env) if env else Path.home() / ".cache" / "pyqemu-tests"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """Serialise downloads/unpacking between concurrent test workers."""
    with open(cache_dir() / ".guest-images.lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    if shutil.which(argv[0]) is None:
        raise GuestImageError(f"{argv[0]} not installed (needed to fetch Debian packages)")
    try:
        res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired as exc:
        raise GuestImageError(f"{' '.join(argv)} timed out") from exc
    if res.returncode != 0:
        msg = (res.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise GuestImageError(f"{' '.join(argv)} failed: {msg}")
    return res.stdout


def _apt_download(package: str, dest: Path) -> Path:
    """``apt-get download package`` into ``dest``; the path of the .deb."""
    dest.mkdir(parents=True, exist_ok=True)
    name = package.split(":")[0]
    arch = package.split(":")[1] if ":" in package else "*"
    existing = sorted(glob.glob(str(dest / f"{name}_*_{arch}.deb")))
    if existing:
        return Path(existing[-1])
    try:
        _run(["apt-get", "download", package], cwd=dest)
    except GuestImageError as exc:
        raise GuestImageError(
            f"{exc} (the host needs 'dpkg --add-architecture arm64 && apt-get update')") from exc
    debs = sorted(glob.glob(str(dest / f"{name}_*_{arch}.deb")))
    if not debs:
        raise GuestImageError(f"apt-get download {package} produced no .deb")
    return Path(debs[-1])


def _unpack(deb: Path, into: Path) -> None:
    """``dpkg-deb -x`` into a fresh directory, made visible atomically."""
    tmp = Path(tempfile.mkdtemp(prefix=into.name + ".", dir=into.parent))
    try:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(into)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------
# Debian packages

@dataclasses.dataclass(frozen=True)
class DebianKernel:
    """An unpacked linux-image-<version>-arm64 package."""

    version: str  # uname -r, e.g. "6.1.0-56-arm64"
    package_version: str  # the Debian version, e.g. "6.1.192-2"
    root: Path  # where the package is unpacked
    image: Path  # boot/vmlinuz-<version> (an arm64 Image with EFI stub)
    modules_dir: Path  # lib/modules/<version>
    config: Path  # boot/config-<version>


def debian_kernel_package() -> DebianKernel:
    """Fetch (once) and describe the kernel that ``linux-image-arm64:arm64`` depends on."""
    base = cache_dir() / "debian-kernel"
    with _cache_lock():
        meta = _apt_download(_KERNEL_META, base / "download")
        depends = _run(["dpkg-deb", "-f", str(meta), "Depends"]).strip()
        pkg = next((d.strip().split()[0] for d in depends.split(",")
                    if d.strip().startswith("linux-image-")), None)
        if pkg is None:
            raise GuestImageError(f"{meta.name}: no linux-image-* in Depends ({depends!r})")
        deb = _apt_download(f"{pkg}:arm64", base / "download")
        pkg_version = _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
        root = base / f"{pkg}_{pkg_version}"
        if not root.exists():
            _unpack(deb, root)
    version = pkg.removeprefix("linux-image-")
    kernel = DebianKernel(version=version, package_version=pkg_version, root=root,
                          image=root / "boot" / f"vmlinuz-{version}",
                          modules_dir=root / "lib" / "modules" / version,
                          config=root / "boot" / f"config-{version}")
    for p in (kernel.image, kernel.modules_dir):
        if not p.exists():
            raise GuestImageError(f"{deb.name}: {p.relative_to(root)} missing")
    return kernel


def debian_kernel() -> Path:
    """Path of Debian's arm64 kernel ``Image`` (fetched on first use)."""
    return debian_kernel_package().image


def kernel_modules_dir() -> Path:
    """The ``lib/modules/<version>`` directory of :func:`debian_kernel`'s package."""
    return debian_kernel_package().modules_dir


def busybox_static() -> Path:
    """Path of Debian's busybox-static arm64 binary (fetched on first use)."""
    # Not tests/linux_user's busybox-static-arm64 directory: that fixture unpacks in place,
    # so it may be half-made while another test worker looks at it.
    root = cache_dir() / "busybox-static-arm64.unpacked"
    exe = root / "bin" / "busybox"
    with _cache_lock():
        if not exe.exists():
            deb = _apt_download(_BUSYBOX_PKG, cache_dir() / "busybox-download")
            if root.exists():  # left by an interrupted run: _unpack renames into place
                shutil.rmtree(root)
            _unpack(deb, root)
    if not exe.exists():
        raise GuestImageError("busybox-static:arm64 has no bin/busybox")
    return exe


# ---------------------------------------------------------------------------------------------
# Kernel modules

def _module_bytes(path: Path) -> bytes:
    """A module's ELF bytes (Debian may ship .ko, .ko.xz or .ko.zst)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        import zstandard  # a pyqemu dependency already (qcow2 zstd)
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


#: The trailer of a signed module (scripts/sign-file.c): ... signature, struct
#: module_signature (12 bytes, sig_len big-endian at offset 8), then this magic.
_MODULE_SIG_MAGIC = b"~Module signature appended~\n"


def strip_module_signature(elf: bytes) -> bytes:
    """The module without its appended signature (as ``strip --strip-debug`` would leave
    it unsigned): the kernel then skips the RSA check (and taints itself, E flag), which
    saves ~20 M guest instructions per module at boot. Unsigned input is returned as is."""
    if not elf.endswith(_MODULE_SIG_MAGIC):
        return elf
    info_end = len(elf) - len(_MODULE_SIG_MAGIC)
    sig_len, = struct.unpack_from(">I", elf, info_end - 4)
    end = info_end - 12 - sig_len
    if end <= 0:
        raise GuestImageError("kernel module has a malformed signature trailer")
    return elf[:end]


def _module_name(path: Path) -> str:
    """The kernel's name for a module file: basename without .ko[.xz], '-' as '_'."""
    return path.name.split(".ko")[0].replace("-", "_")


def modinfo(elf: bytes) -> dict[str, list[str]]:
    """The ``key=value`` strings of a module's ``.modinfo`` section, grouped by key."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise GuestImageError("kernel module is not a little-endian ELF64 file")
    e_shoff, = struct.unpack_from("<Q", elf, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, off, size = struct.unpack_from(
            "<IIQQQQ", elf, e_shoff + i * e_shentsize)
        return name, off, size

    _n, stroff, strsize = section(e_shstrndx)
    names = elf[stroff:stroff + strsize]
    info: dict[str, list[str]] = {}
    for i in range(e_shnum):
        name, off, size = section(i)
        if names[name:names.index(b"\0", name)] != b".modinfo":
            continue
        for item in elf[off:off + size].split(b"\0"):
            if b"=" in item:
                key, _, value = item.decode("utf-8", "replace").partition("=")
                info.setdefault(key, []).append(value)
    return info


class _ModuleIndex:
    """Names, dependencies and aliases of every module in a modules dir (depmod's view)."""

    def __init__(self, modules_dir: Path) -> None:
        self.modules_dir = modules_dir
        self.paths: dict[str, Path] = {}
        for p in modules_dir.rglob("*.ko*"):
            self.paths.setdefault(_module_name(p), p)
        self._info: dict[str, dict[str, list[str]]] = {}
        self._aliases: dict[str, str] | None = None

    def info(self, name: str) -> dict[str, list[str]]:
        if name not in self._info:
            self._info[name] = modinfo(_module_bytes(self.paths[name]))
        return self._info[name]

    def lookup(self, name: str) -> str | None:
        """Module providing ``name`` (a module name or an exact alias such as crc32c)."""
        key = name.replace("-", "_")
        if key in self.paths:
            return key
        if self._aliases is None:
            self._aliases = self._load_aliases()
        return self._aliases.get(name)

    def _load_aliases(self) -> dict[str, str]:
        # Only plain (wildcard-free) aliases are needed: soft dependencies name crypto
        # algorithms ("crc32c") that a module provides as "alias=crc32c".
        cache = self.modules_dir.parent.parent.parent / ".pyqemu-aliases.json"
        if cache.exists():
            loaded: dict[str, str] = json.loads(cache.read_text())
            return loaded
        aliases: dict[str, str] = {}
        for name in sorted(self.paths):
            for alias in self.info(name).get("alias", []):
                if not any(c in alias for c in "*?[:"):
                    aliases.setdefault(alias, name)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(aliases))
        tmp.replace(cache)
        return aliases

    def direct_deps(self, name: str) -> list[str]:
        info = self.info(name)
        deps = [d for v in info.get("depends", []) for d in v.split(",") if d]
        for soft in info.get("softdep", []):
            # "pre: crc32c post: foo": only pre-dependencies must be loaded first.
            words = soft.split()
            pre = False
            for w in words:
                if w.endswith(":"):
                    pre = w == "pre:"
                elif pre:
                    dep = self.lookup(w)
                    if dep is not None:
                        deps.append(dep)
        return [d.replace("-", "_") for d in deps]


def resolve_modules(names: Iterable[str], modules_dir: Path) -> list[Path]:
    """The module files for ``names`` and all their dependencies, dependencies first."""
    index = _ModuleIndex(modules_dir)
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise GuestImageError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        if name not in index.paths:
            raise GuestImageError(f"module {name} not in {modules_dir} "
                                  f"(wanted by {chain[-1] if chain else 'the caller'})")
        state[name] = 1
        for dep in index.direct_deps(name):
            visit(dep, (*chain, name))
        state[name] = 2
        order.append(name)

    for n in names:
        found = index.lookup(n)
        if found is None:
            raise GuestImageError(f"module {n} not in {modules_dir} (built in, or misspelt?)")
        visit(found, ())
    return [index.paths[n] for n in order]


# ---------------------------------------------------------------------------------------------
# newc cpio

S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFLNK = 0o120000
S_IFCHR = 0o020000


@dataclasses.dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive (the kernel's initramfs format)."""

    name: str  # without leading '/'
    mode: int  # file type bits | permissions
    data: bytes = b""  # file contents, or the target of a symlink
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node


def newc_archive(entries: Iterable[CpioEntry]) -> bytes:
    """A ``070701`` (newc) cpio archive, as the kernel's initramfs unpacker reads it.

    Layout (Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte ASCII
    header of 13 eight-digit hex fields, the NUL-terminated name padded to 4 bytes, then the
    data padded to 4 bytes; ends with the member ``TRAILER!!!``.
    """
    out = bytearray()

    def member(ino: int, e: CpioEntry) -> None:
        name = e.name.encode() + b"\0"
        fields = (ino, e.mode, 0, 0, 2 if e.mode & S_IFDIR == S_IFDIR else 1, 0, len(e.data),
                  0, 0, e.rdev[0], e.rdev[1], len(name), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.extend(name)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(e.data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, entry in enumerate(entries, start=1):
        member(ino, entry)
    member(0, CpioEntry("TRAILER!!!", 0))
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# initramfs

_INIT_TEMPLATE = r"""#!/bin/busybox sh
# /init of a pyqemu test initramfs (generated by pyqemu.testing.guest_images).
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /run /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts 2>/dev/null
ip link set lo up 2>/dev/null
while read -r m; do
    [ -n "$m" ] && { insmod "/lib/modules/$m" || echo "PYQEMU-INSMOD-FAIL $m"; }
done < /etc/pyqemu/modules
script=/etc/pyqemu/default.sh
halt=poweroff
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        pyqemu.script=*) script="/etc/pyqemu/${arg#pyqemu.script=}.sh" ;;
        pyqemu.halt=*) halt="${arg#pyqemu.halt=}" ;;
    esac
done
echo "@INIT_MARKER@"
if [ -f "$script" ]; then
    sh "$script"
    rc=$?
else
    echo "no such test script: $script"
    rc=127
fi
echo "@DONE_MARKER@ rc=$rc"
sync
case "$halt" in
    reboot) reboot -f ;;
    none) while :; do sleep 3600; done ;;
    *) poweroff -f ;;
esac
"""


def _init_script() -> str:
    return (_INIT_TEMPLATE.replace("@INIT_MARKER@", INIT_MARKER)
            .replace("@DONE_MARKER@", DONE_MARKER))


def _as_bytes(content: bytes | str) -> bytes:
    return content.encode() if isinstance(content, str) else content


def build_initramfs(modules: Iterable[str] = DEFAULT_MODULES, init_script: str = "true\n",
                    extra_files: Mapping[str, bytes | str] | None = None,
                    scripts: Mapping[str, str] | None = None,
                    out: Path | None = None, strip_signatures: bool = True) -> Path:
    """A gzip-compressed newc initramfs for :func:`debian_kernel` (cached by content).

    ``modules`` are module names (``virtio_blk``) resolved with their dependencies;
    ``init_script`` is the default test script (busybox sh) run after the init marker;
    ``scripts`` are more scripts selectable with ``pyqemu.script=<name>`` on the kernel
    command line; ``extra_files`` maps guest paths to contents (executable when the
    contents start with ``#!``). ``strip_signatures`` stores the modules unsigned (see
    :func:`strip_module_signature`). Returns ``out`` if given, else a path in the cache.
    """
    kernel = debian_kernel_package()
    busybox = busybox_static()
    mod_paths = resolve_modules(modules, kernel.modules_dir)
    files: dict[str, bytes] = {"etc/pyqemu/default.sh": init_script.encode()}
    for name, text in (scripts or {}).items():
        if "/" in name or not name:
            raise GuestImageError(f"bad script name {name!r}")
        files[f"etc/pyqemu/{name}.sh"] = text.encode()
    for path, content in (extra_files or {}).items():
        files[path.lstrip("/")] = _as_bytes(content)

    key = hashlib.sha256(json.dumps({
        "layout": _LAYOUT_VERSION, "init": _init_script(), "kernel": kernel.version,
        "kpkg": kernel.package_version, "busybox": busybox.stat().st_size,
        "modules": [str(p.relative_to(kernel.modules_dir)) for p in mod_paths],
        "unsigned": strip_signatures,
        "files": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())},
    }, sort_keys=True).encode()).hexdigest()[:16]
    cached = cache_dir() / "initramfs" / f"initrd-{key}.cpio.gz"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        data = _initramfs_bytes(busybox, mod_paths, files, strip_signatures)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
    if out is None:
        return cached
    shutil.copyfile(cached, out)
    return out


def _initramfs_bytes(busybox: Path, mod_paths: list[Path], files: Mapping[str, bytes],
                     strip_signatures: bool) -> bytes:
    entries: list[CpioEntry] = []
    dirs: set[str] = set()

    def add_dirs(path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                entries.append(CpioEntry(d, S_IFDIR | 0o755))

    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "run", "root", "etc/pyqemu",
              "lib/modules"):
        add_dirs(d + "/")
    # The console node lets the kernel open /dev/console for init before devtmpfs is mounted.
    entries.append(CpioEntry("dev/console", S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(CpioEntry("bin/busybox", S_IFREG | 0o755, busybox.read_bytes()))
    entries.append(CpioEntry("bin/sh", S_IFLNK | 0o777, b"busybox"))
    entries.append(CpioEntry("init", S_IFREG | 0o755, _init_script().encode()))
    names = []
    for p in mod_paths:
        name = p.name.split(".ko")[0] + ".ko"  # stored decompressed: busybox insmod is plain
        names.append(name)
        elf = _module_bytes(p)
        if strip_signatures:
            elf = strip_module_signature(elf)
        entries.append(CpioEntry(f"lib/modules/{name}", S_IFREG | 0o644, elf))
    entries.append(CpioEntry("etc/pyqemu/modules", S_IFREG | 0o644,
                             ("\n".join(names) + "\n").encode()))
    for path, data in sorted(files.items()):
        add_dirs(path)
        mode = 0o755 if data.startswith(b"#!") or path.endswith(".sh") else 0o644
        entries.append(CpioEntry(path, S_IFREG | mode, data))
    return gzip.compress(newc_archive(entries), compresslevel=6, mtime=0)


def main(argv: list[str] | None = None) -> int:
    """``python -m pyqemu.testing.guest_images [--modules a,b] [--script FILE]``: fetch the
    kernel, build an initramfs and print both paths (for booting a guest by hand)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m pyqemu.testing.guest_images",
                                 description=main.__doc__)
    ap.add_argument("--modules", default=",".join(DEFAULT_MODULES),
                    help="comma-separated module names ('' for none)")
    ap.add_argument("--script", type=Path, help="the test script /init runs after the marker")
    args = ap.parse_args(argv)
    try:
        kernel = debian_kernel_package()
        initrd = build_initramfs(modules=[m for m in args.modules.split(",") if m],
                                 init_script=args.script.read_text() if args.script else "true\n")
    except (GuestImageError, OSError) as exc:
        print(f"guest_images: {exc}", file=sys.stderr)
        return 1
    print(f"kernel {kernel.image}")
    print(f"initrd {initrd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
