"""vhdx property test: random writes and zero writes against a bytearray model; the real
qemu-img then finds the image clean (check) and equal to the model (compare)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vhdx_helpers import MiB, open_vhdx

from pyqemu.block.vhdx import VhdxImage

SIZE = 4 * MiB + 1536  # 1 MiB blocks: a partial last block


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(subformat=st.sampled_from(["dynamic", "fixed"]), zero_blocks=st.booleans(),
       data=st.data())
def test_random_writes_match_model(tmp_path, qemu_img, subformat, zero_blocks, data):
    img = str(tmp_path / "h.vhdx")
    raw = tmp_path / "h.raw"
    VhdxImage.create(img, SIZE, {"subformat": subformat, "block_size": MiB,
                                 "block_state_zero": zero_blocks})
    model = bytearray(SIZE)
    with open_vhdx(img, readonly=False) as im:
        for _ in range(data.draw(st.integers(1, 6), label="ops")):
            off = data.draw(st.integers(0, SIZE - 1), label="offset")
            n = data.draw(st.integers(1, min(SIZE - off, 3 * MiB)), label="length")
            if data.draw(st.booleans(), label="zero"):
                im.write_zeroes(off, n)
                model[off:off + n] = bytes(n)
            else:
                pat = bytes([data.draw(st.integers(1, 255), label="byte")])
                im.write(off, pat * n)
                model[off:off + n] = pat * n
            lo = max(0, off - 700)
            hi = min(SIZE, off + n + 700)
            assert im.read(lo, hi - lo) == model[lo:hi]
    raw.write_bytes(bytes(model))
    rc, chk = qemu_img.check(img, "vhdx")
    assert rc == 0 and "corruptions" not in chk, chk
    assert qemu_img.compare(str(raw), img, "-f", "raw", "-F", "vhdx").rc == 0
    with open_vhdx(img) as im:
        assert im.read(0, SIZE) == model
