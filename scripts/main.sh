#!/usr/bin/env bash
# The main job with defaults: a real pyqemu-img session on a generated image (create, write
# through convert, info, check, map, snapshot, compare against qemu-img), then a real arm64
# guest (Debian's busybox) under pyqemu-aarch64 checked against qemu-aarch64.
# `scripts/main.sh --boot` also boots Debian's arm64 Linux on pyqemu-system-aarch64 -M virt
# to its init (several CPU-minutes: the python backend runs the kernel at ~1.5 MIPS).
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
bash scripts/setup.sh
exec .venv/bin/python -m pyqemu.demo "$@"
