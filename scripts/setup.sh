#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: Debian packages (the real QEMU tools
# used as oracles, cross compilers), a venv in .venv with pyqemu installed editable.
# Sourced or run by scripts/main.sh and scripts/test.sh; safe to run again.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"

DEB_PACKAGES=(
  qemu-utils              # qemu-img, qemu-io: the oracle for the block layer
  qemu-user               # qemu-aarch64: the oracle for linux-user mode
  gcc-aarch64-linux-gnu   # builds the arm64 guest test programs
  libc6-dev-arm64-cross   # ... and their libc (also the -L sysroot)
  qemu-system-arm         # qemu-system-aarch64: oracle for devices and system mode
  device-tree-compiler    # dtc: oracle for the device tree builder
  qemu-efi-aarch64        # UEFI firmware for -bios/-pflash boot tests
  u-boot-qemu             # U-Boot for -M virt: the other firmware the issue names
  ipxe-qemu               # the option ROMs qemu-system wants for its default NICs
  cpio kmod               # references for the initramfs builder (cpio reads ours; modinfo)
  iproute2                # `ip`: the tap netdev tests create their tap interfaces
  strace                  # the crash tests delay each write syscall so SIGKILL lands between writes
)

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need_update=0
# arm64 package lists: tests `apt-get download` Debian's arm64 busybox, libraries, kernels.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  need_update=1
fi

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ $need_update = 1 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -q >&2
fi
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.pyqemu-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >&2
  .venv/bin/pip install -q -e ".[test,llvm]" >&2
  touch "$stamp"
fi
