"""Every logical-immediate encoding (N:immr:imms, 32- and 64-bit) decoded by
DecodeBitMasks, against capstone's decoding of the same AND-immediate words (and
reserved encodings must be rejected by both)."""

from __future__ import annotations

import re

import pytest

from pyqemu.target.aarch64.trans_dp_imm import decode_bit_masks

capstone = pytest.importorskip("capstone")


@pytest.mark.parametrize("sf", [0, 1])
def test_all_bitmask_immediates_match_capstone(sf: int) -> None:
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    checked = 0
    for n in (0, 1):
        for immr in range(64):
            for imms in range(64):
                word = (sf << 31) | (0b00100100 << 23) | (n << 22) | (immr << 16) \
                    | (imms << 10) | (1 << 5)  # AND Rd=0, Rn=1
                ours = decode_bit_masks(n, imms, immr, sf)
                insns = list(md.disasm(word.to_bytes(4, "little"), 0))
                if not insns:
                    assert ours is None, f"{word:#010x}: capstone rejects, we give {ours:#x}"
                    continue
                m = re.search(r"#(0x[0-9a-f]+|\d+)", insns[0].op_str)
                assert m, insns[0].op_str
                assert ours == int(m.group(1), 0), f"{word:#010x}: {insns[0].op_str}"
                checked += 1
    assert checked == (7680 if sf else 3648)  # valid encodings, as capstone counts them
