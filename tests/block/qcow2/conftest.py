"""qcow2 tests need the real qemu-img/qemu-io (the oracles): skip cleanly without them."""

from __future__ import annotations

import pytest
from qcow2_helpers import need_qemu


@pytest.fixture(autouse=True)
def _need_tools() -> None:
    need_qemu()
