#!/usr/bin/env bash
# The main job with defaults. For now: a real pyqemu-img session on a generated image
# (create, write through convert, info, check, map, snapshot, compare against qemu-img).
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
bash scripts/setup.sh
exec .venv/bin/python -m pyqemu.demo "$@"
