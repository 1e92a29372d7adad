#!/usr/bin/env bash
# Run the test suite (installs what it needs first). Default: everything not marked slow.
#   scripts/test.sh            default suite (CI)
#   scripts/test.sh --slow     only the slow tests (full boots, soaks)
#   scripts/test.sh ARGS...    extra pytest arguments (e.g. tests/block -k qcow2)
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
bash scripts/setup.sh
args=()
if [ "${1:-}" = "--slow" ]; then shift; args+=(-m slow); fi
set +e
.venv/bin/python -m pytest -n 2 "${args[@]}" "$@"
rc=$?
set -e
# pytest exits 5 when nothing was collected: that is a failure of the suite, not a pass.
exit $rc
