"""``pyqemu-aarch64`` with the llvm backend (until the CLI accepts ``backend=llvm``).

Run as ``python llvm_user.py <pyqemu-aarch64 arguments>``; PYQEMU_LLVM_TIER sets the
context's tier threshold (executions before a block is compiled natively).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pyqemu.accel.tcg import context
from pyqemu.linux_user import main as user_main

_init = user_main.UserOptions.__init__
_ctx_init = context.TCGContext.__init__


def _opts_init(self: Any) -> None:
    _init(self)
    self.backend = "llvm"


def _ctx(self: Any, *a: Any, **kw: Any) -> None:
    if "PYQEMU_LLVM_TIER" in os.environ:
        kw["tier_threshold"] = int(os.environ["PYQEMU_LLVM_TIER"])
    _ctx_init(self, *a, **kw)


user_main.UserOptions.__init__ = _opts_init  # type: ignore[method-assign]
context.TCGContext.__init__ = _ctx  # type: ignore[method-assign]

if __name__ == "__main__":
    from pyqemu.cli.user import main_aarch64

    sys.exit(main_aarch64(sys.argv[1:]))
