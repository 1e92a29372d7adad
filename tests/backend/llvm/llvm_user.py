"""``pyqemu-aarch64`` with the llvm backend (until the CLI accepts ``backend=llvm``).

Run as ``python llvm_user.py <pyqemu-aarch64 arguments>``. The backend tiers by itself:
PYQEMU_TIER sets its closure-tier runs, PYQEMU_LLVM_HOT its python-tier runs before a
block is compiled natively (0: every block native at once).
"""

from __future__ import annotations

import sys
from typing import Any

from pyqemu.linux_user import main as user_main

_init = user_main.UserOptions.__init__


def _opts_init(self: Any) -> None:
    _init(self)
    self.backend = "llvm"


user_main.UserOptions.__init__ = _opts_init  # type: ignore[method-assign]

if __name__ == "__main__":
    from pyqemu.cli.user import main_aarch64

    sys.exit(main_aarch64(sys.argv[1:]))
