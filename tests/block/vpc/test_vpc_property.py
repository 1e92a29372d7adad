"""vpc property test: random writes and zero writes against a bytearray model; the real
qemu-img then finds the image equal to the model (compare) with the same map."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vpc_helpers import MiB, merged_map, open_vpc

from pyqemu.block.vpc import VpcImage


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(subformat=st.sampled_from(["dynamic", "fixed"]), force=st.booleans(), data=st.data())
def test_random_writes_match_model(tmp_path, qemu_img, subformat, force, data):
    img = str(tmp_path / "h.vhd")
    raw = tmp_path / "h.raw"
    VpcImage.create(img, 7 * MiB + 1000, {"subformat": subformat, "force_size": force})
    with open_vpc(img, readonly=False) as im:
        size = im.virtual_size
        model = bytearray(size)
        for _ in range(data.draw(st.integers(1, 6), label="ops")):
            off = data.draw(st.integers(0, size - 1), label="offset")
            n = data.draw(st.integers(1, min(size - off, 5 * MiB)), label="length")
            if data.draw(st.booleans(), label="zero"):
                im.write_zeroes(off, n)
                model[off:off + n] = bytes(n)
            else:
                pat = bytes([data.draw(st.integers(1, 255), label="byte")])
                im.write(off, pat * n)
                model[off:off + n] = pat * n
            lo = max(0, off - 700)
            hi = min(size, off + n + 700)
            assert im.read(lo, hi - lo) == model[lo:hi]
    raw.write_bytes(bytes(model))
    assert qemu_img.info(img, "vpc")["virtual-size"] == size
    assert qemu_img.compare(str(raw), img, "-f", "raw", "-F", "vpc").rc == 0
    with open_vpc(img) as im:
        assert im.read(0, size) == model
        assert merged_map(im) == qemu_img.map(img, "vpc")
