"""Property test: random writes, zero writes, discards, resizes and snapshot operations on a
pyqemu qcow2 image against a bytearray model; the real qemu-img checks and reads each result."""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from qcow2_helpers import (
    assert_qemu_check_clean,
    qcreate,
    qemu_io,
    qemu_raw,
    qopen,
    read_all,
    run,
)

from pyqemu.block.errors import BlockError

KiB = 1024

geometry = st.sampled_from([
    {"cluster_size": 512},
    {"cluster_size": 4096, "refcount_bits": 2},
    {"cluster_size": 65536},
    {"cluster_size": 16384, "extended_l2": True},
    {"cluster_size": 4096, "compat": "0.10"},
    {"cluster_size": 32768, "extended_l2": True, "lazy_refcounts": True},
    # on top of a backing file full of data (COW, discard and resize semantics change)
    {"cluster_size": 65536, "backing": True},
    {"cluster_size": 16384, "extended_l2": True, "backing": True},
    {"cluster_size": 4096, "compat": "0.10", "backing": True},
])


@st.composite
def operations(draw: Any) -> list[tuple[Any, ...]]:
    ops = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["write", "write", "write", "zero", "zero_unmap",
                                     "discard", "resize", "snap_create", "snap_apply",
                                     "snap_delete", "compressed"]))
        off = draw(st.integers(0, 300 * KiB))
        n = draw(st.integers(1, 200 * KiB))
        ops.append((kind, off, n, draw(st.integers(1, 255)),
                    draw(st.integers(64, 600)) * 512))
    return ops


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(geo=geometry, ops=operations())
# found earlier: compressed data packed into a cluster freed by a snapshot apply
@example(geo={"cluster_size": 512},
         ops=[("snap_create", 0, 1, 1, 32768), ("compressed", 0, 1, 1, 32768),
              ("snap_apply", 0, 1, 1, 32768), ("write", 512, 1, 1, 32768),
              ("write", 0, 1, 1, 32768), ("compressed", 0, 1, 1, 32768)])
# found earlier: refcount overflow with 2-bit refcounts and packed compressed clusters
@example(geo={"cluster_size": 4096, "refcount_bits": 2},
         ops=[("compressed", 4096, 1, 1, 32768), ("compressed", 0, 1, 1, 32768),
              ("snap_create", 0, 1, 1, 32768)])
# found earlier: data written into the cluster of an L2 table freed by a snapshot deletion
@example(geo={"cluster_size": 4096, "refcount_bits": 2},
         ops=[("write", 0, 1, 1, 32768), ("snap_create", 0, 1, 1, 32768),
              ("write", 0, 1, 1, 32768), ("snap_delete", 0, 1, 1, 32768),
              ("write", 0, 4097, 1, 32768), ("write", 0, 4097, 1, 32768)])
def test_random_ops_match_model(geo: dict[str, Any], ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/p.qcow2"
        size = 256 * KiB
        geo = dict(geo)
        base = b""
        if geo.pop("backing", False):
            run("qemu-img", "create", "-q", "-f", "qcow2", f"{tmp}/base.qcow2", str(size))
            qemu_io(f"{tmp}/base.qcow2", "write -P 0xb5 0 256k")
            base = b"\xb5" * size
            geo.update(backing_file="base.qcow2", backing_fmt="qcow2")
        qcreate(path, size, **geo)
        cs = geo["cluster_size"]
        v2 = geo.get("compat") == "0.10"
        model = bytearray(base or bytes(size))
        snaps: dict[str, bytes] = {}
        counter = 0
        img = qopen(path)
        try:
            for kind, off, n, pat, newsize in ops:
                size = len(model)
                off = off % size
                n = min(n, size - off)
                if kind == "write":
                    img.write(off, bytes([pat]) * n)
                    model[off:off + n] = bytes([pat]) * n
                elif kind in ("zero", "zero_unmap"):
                    img.write_zeroes(off, n, may_unmap=kind == "zero_unmap")
                    model[off:off + n] = bytes(n)
                elif kind == "discard":
                    img.discard(off, n)
                    a = -(-off // cs) * cs
                    b = (off + n) // cs * cs if off + n != size else size
                    if b > a:
                        # v2 has no zero flag: discarded clusters show the backing again
                        model[a:b] = base[a:b].ljust(b - a, b"\0") if v2 else bytes(b - a)
                elif kind == "compressed":
                    c0 = off // cs * cs
                    m = min(cs, size - c0)
                    data = (bytes([pat]) * 7 + b"qcow2") * (m // 12 + 1)
                    img.write_compressed(c0, data[:m])
                    model[c0:c0 + m] = data[:m]
                elif kind == "resize":
                    # whole clusters only: QEMU keeps the stale tail of a partial last
                    # cluster across shrink+grow (test_shrink_grow_keeps_partial_cluster)
                    newsize = max(cs, newsize // cs * cs)
                    if snaps:
                        try:
                            img.truncate(newsize, shrink=True)
                        except BlockError:
                            continue
                        raise AssertionError("resize with snapshots must be refused")
                    if base and v2 and newsize > size and len(base) > size:
                        with pytest.raises(BlockError, match="zero out"):
                            img.truncate(newsize, shrink=True)
                        continue
                    img.truncate(newsize, shrink=True)
                    if newsize < size:
                        del model[newsize:]
                        # shrinking keeps partial clusters: the tail reads back as before
                    else:
                        model.extend(bytes(newsize - size))
                elif kind == "snap_create":
                    counter += 1
                    name = f"s{counter}"
                    try:
                        img.snapshot_create(name)
                    except BlockError as exc:
                        # small refcount_bits: shared clusters can run out of refcount
                        assert "refcount" in str(exc) and geo.get("refcount_bits", 16) < 16
                        continue
                    snaps[name] = bytes(model)
                elif kind == "snap_apply" and snaps:
                    name = sorted(snaps)[pat % len(snaps)]
                    try:
                        img.snapshot_goto(name)
                    except BlockError as exc:
                        assert "refcount" in str(exc) and geo.get("refcount_bits", 16) < 16
                        continue
                    model[:] = snaps[name]
                elif kind == "snap_delete" and snaps:
                    name = sorted(snaps)[pat % len(snaps)]
                    img.snapshot_delete(name)
                    del snaps[name]
            assert read_all(img) == bytes(model)
        finally:
            img.close()
        assert_qemu_check_clean(path)
        assert qemu_raw(path, tmp) == bytes(model)
        img = qopen(path, readonly=True)
        try:
            assert read_all(img) == bytes(model)
            res = img.check(0)
            assert res.corruptions == 0 and res.leaks == 0, res.messages
        finally:
            img.close()
