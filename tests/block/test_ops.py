"""pyqemu.block.ops used from Python, checked against the real qemu-img."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from pyqemu.block import FORMATS, create_image, open_image, ops
from pyqemu.block.driver import Image
from pyqemu.block.errors import BlockError


def _require(fmt: str) -> None:
    if fmt not in FORMATS:
        pytest.skip(f"format {fmt} not registered in pyqemu yet")


def _digest(path: str) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _merge(extents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge adjacent extents of equal status; drop host offsets."""
    out: list[dict[str, Any]] = []
    for ext in extents:
        ext = {k: v for k, v in ext.items() if k not in ("offset", "compressed")}
        if out and all(out[-1][k] == ext[k] for k in ext if k not in ("start", "length")) \
                and out[-1]["start"] + out[-1]["length"] == ext["start"]:
            out[-1]["length"] += ext["length"]
        else:
            out.append(ext)
    return out


def _our_map(img: Image) -> list[dict[str, Any]]:
    """``qemu-img map --output=json`` computed with ops.block_status_above, the way
    qemu-img's get_block_status walks the chain: one layer at a time until a layer
    reports data or zeroes."""
    total = ops.image_length(img)
    offset = 0
    out = []
    while offset < total:
        layer: Image | None = img
        depth = 0
        length = total - offset
        flags = 0
        while layer is not None:
            st = ops.block_status_above(layer, layer.backing, offset, length)
            assert st.length > 0
            length, flags = st.length, st.flags
            if flags & (ops.STATUS_ZERO | ops.STATUS_DATA):
                break
            layer = layer.backing
            if layer is None:
                flags = 0
                break
            depth += 1
        out.append({"start": offset, "length": length, "depth": depth,
                    "present": bool(flags & ops.STATUS_ALLOCATED),
                    "zero": bool(flags & ops.STATUS_ZERO),
                    "data": bool(flags & ops.STATUS_DATA)})
        offset += length
    return _merge(out)


@pytest.fixture
def chain(tmp_path: pathlib.Path, qemu_img: Any, qemu_io: Any) -> list[str]:
    """base (4M) <- mid (4M) <- top (6M)."""
    _require("qcow2")
    base = str(tmp_path / "base.qcow2")
    mid = str(tmp_path / "mid.qcow2")
    top = str(tmp_path / "top.qcow2")
    qemu_img.create("qcow2", base, "4M")
    qemu_io.run(base, "write -P 1 0 1M", "write -z 2M 64k", "write -P 4 3M 512k").ok()
    qemu_img.create("qcow2", mid, None, "-b", base, "-F", "qcow2")
    qemu_io.run(mid, "write -P 2 512k 1M", "write -z 3M 64k").ok()
    qemu_img.create("qcow2", top, "6M", "-b", mid, "-F", "qcow2")
    qemu_io.run(top, "write -P 3 1M 1M", "write -z 3200k 64k", "write -P 5 5M 4k").ok()
    return [base, mid, top]


@pytest.fixture
def opened() -> Iterator[list[Image]]:
    images: list[Image] = []
    yield images
    for img in reversed(images):
        img.close()


def test_block_status_above_matches_qemu_map(chain: list[str], qemu_img: Any,
                                             opened: list[Image]) -> None:
    for path in chain:
        img = open_image(path)
        opened.append(img)
        assert _our_map(img) == _merge(qemu_img.map(path))


def test_block_status_above_raw_holes(tmp_path: pathlib.Path, qemu_img: Any, qemu_io: Any,
                                      opened: list[Image]) -> None:
    _require("raw")
    path = str(tmp_path / "holes.raw")
    qemu_img.create("raw", path, "3M")
    qemu_io.run(path, "write -P 7 64k 64k", "write -P 8 2M 4k", fmt="raw").ok()
    img = open_image(path, "raw")
    opened.append(img)
    assert _our_map(img) == _merge(qemu_img.map(path, "raw"))


def test_is_allocated_above_and_find_backing(chain: list[str], opened: list[Image]) -> None:
    top = open_image(chain[2])
    opened.append(top)
    mid, base = top.backing, top.backing.backing  # type: ignore[union-attr]
    assert ops.find_backing_image(top, chain[0]) is base
    assert ops.find_backing_image(top, "mid.qcow2") is mid
    assert ops.find_backing_image(top, "nosuch.qcow2") is None
    # 512k..1M lives in mid only: allocated above base, not in top alone
    assert ops.is_allocated_above(top, base, 512 << 10, 1 << 20) == (True, 512 << 10)
    assert ops.is_allocated_above(top, top, 512 << 10, 4096, include_base=True)[0] is False
    # past mid's end (4M) the top is unallocated: zeroes synthesised, "allocated"
    assert ops.is_allocated_above(top, base, 4 << 20, 65536)[0] is True


def test_convert_api_concatenates(tmp_path: pathlib.Path, chain: list[str], qemu_img: Any,
                                  opened: list[Image]) -> None:
    """ops.convert with two open sources equals qemu-img convert of the same files."""
    _require("raw")
    top = open_image(chain[2])
    mid = open_image(chain[1])
    opened += [top, mid]
    out = str(tmp_path / "ours.qcow2")
    total = ops.image_length(top) + ops.image_length(mid)
    create_image("qcow2", out, total, {})
    target = open_image(out, "qcow2", readonly=False)
    try:
        ops.convert([top, mid], target)
    finally:
        target.close()
    theirs = str(tmp_path / "theirs.qcow2")
    qemu_img.run("convert", "-O", "qcow2", chain[2], chain[1], theirs).ok()
    assert _digest(out) == _digest(theirs)


def test_convert_api_refuses_small_target(tmp_path: pathlib.Path, chain: list[str],
                                          opened: list[Image]) -> None:
    top = open_image(chain[2])
    opened.append(top)
    out = str(tmp_path / "small.qcow2")
    create_image("qcow2", out, 1 << 20, {})
    target = open_image(out, "qcow2", readonly=False)
    opened.append(target)
    with pytest.raises(BlockError, match="output file is smaller than input file"):
        ops.convert([top], target, target_is_new=False)
    with pytest.raises(BlockError, match="Invalid buffer size for sparse output"):
        ops.convert([top], target, min_sparse=1000)


@pytest.mark.parametrize("strict", [False, True])
def test_compare_api_matches_qemu(strict: bool, chain: list[str], tmp_path: pathlib.Path,
                                  qemu_img: Any, opened: list[Image]) -> None:
    flat = str(tmp_path / "flat.raw")
    qemu_img.run("convert", "-O", "raw", chain[2], flat).ok()
    pairs = [(chain[2], flat), (chain[1], chain[2]), (chain[0], chain[1]), (flat, chain[0])]
    for a, b in pairs:
        ia, ib = open_image(a), open_image(b)
        opened += [ia, ib]
        res = ops.compare(ia, ib, strict=strict)
        q = qemu_img.compare(a, b, *(["-s"] if strict else []))
        assert res.exit_code == q.rc
        assert "".join(line + "\n" for line in res.messages) == q.out


def test_commit_api(chain: list[str], tmp_path: pathlib.Path, qemu_img: Any,
                    opened: list[Image]) -> None:
    expect = str(tmp_path / "expect.raw")
    qemu_img.run("convert", "-O", "raw", chain[2], expect).ok()
    top = open_image(chain[2], readonly=False)
    opened.append(top)
    with pytest.raises(BlockError, match="read-write"):
        ops.commit(top)  # the backing file is open read-only
    from pyqemu.cli.img_commit import reopen_backing_rw

    base = reopen_backing_rw(top, top.backing.backing)  # type: ignore[union-attr]
    assert ops.commit(top, base, drop=True) is base
    opened.remove(top)
    top.close()
    assert qemu_img.compare(chain[0], expect).rc == 0
    assert qemu_img.compare(chain[2], expect).rc == 0


def test_rebase_api_safe_and_unsafe(chain: list[str], tmp_path: pathlib.Path, qemu_img: Any,
                                    opened: list[Image]) -> None:
    expect = str(tmp_path / "expect.raw")
    qemu_img.run("convert", "-O", "raw", chain[2], expect).ok()
    top = open_image(chain[2], readonly=False)
    opened.append(top)
    ops.rebase(top, None, None, None)  # safe: copy everything the chain provided
    opened.remove(top)
    top.close()
    assert "backing-filename" not in qemu_img.info(chain[2])
    assert qemu_img.compare(chain[2], expect).rc == 0
    top = open_image(chain[2], readonly=False, backing=False)
    opened.append(top)
    with pytest.raises(BlockError, match="backing format must be specified"):
        ops.rebase(top, None, chain[0], None, unsafe=True)
    ops.rebase(top, None, chain[0], "qcow2", unsafe=True)
    opened.remove(top)
    top.close()
    assert qemu_img.info(chain[2])["backing-filename"] == chain[0]


@pytest.mark.parametrize("bs,count,skip", [(512, None, None), (4096, 100, 3),
                                           (1 << 20, None, None), (1000, 5000, 17),
                                           (512, None, 100000), (65536, 0, None)])
def test_dd_output_size_matches_qemu(bs: int, count: int | None, skip: int | None,
                                     chain: list[str], tmp_path: pathlib.Path,
                                     qemu_img: Any) -> None:
    out = str(tmp_path / "dd.raw")
    operands = [f"bs={bs}"] + ([f"count={count}"] if count is not None else []) + \
        ([f"skip={skip}"] if skip is not None else [])
    qemu_img.run("dd", f"if={chain[2]}", f"of={out}", *operands)
    size = qemu_img.info(out, "raw")["virtual-size"]
    ours = ops.dd_output_size(6 << 20, bs=bs, count=count, skip=skip)
    assert -(-ours // 512) * 512 == size


def test_bench_api_rejects_requests_past_the_end(chain: list[str],
                                                 opened: list[Image]) -> None:
    img = open_image(chain[0])
    opened.append(img)
    res = ops.bench(img, count=100, bufsize=65536)
    assert res.requests == 100 and res.seconds >= 0
    with pytest.raises(BlockError, match="Failed request: Input/output error"):
        ops.bench(img, count=2, bufsize=4096, offset=(4 << 20) - 2048)



@pytest.mark.parametrize("seed", range(12))
def test_sparse_detection_random_layouts(seed: int, tmp_path: pathlib.Path, qemu_img: Any,
                                         pyqemu_img: Any) -> None:
    """Random runs of zero and non-zero sectors (and sub-sector specks), in a fully
    allocated or a sparse host file, converted with a random -S: the holes land exactly
    where qemu-img puts them."""
    import random

    _require("raw")
    rng = random.Random(seed)
    size = rng.choice([1, 2, 3]) << 20
    data = bytearray(size)
    pos = 0
    while pos < size:
        run = rng.choice([512, 1024, 3072, 4096, 8192, 12288, 65536, 131072, 700, 5000])
        kind = rng.random()
        if kind < 0.45:
            data[pos:pos + run] = rng.randbytes(min(run, size - pos))
        elif kind < 0.55 and pos + run // 2 < size:  # a lone non-zero byte in zeroes
            data[pos + run // 2] = 1
        pos += run
    src = tmp_path / "src.raw"
    if seed % 2:
        src.write_bytes(bytes(data))
    else:  # leave the zero blocks as holes in the host file
        with open(src, "wb") as f:
            f.truncate(size)
            for off in range(0, size, 4096):
                block = bytes(data[off:off + 4096])
                if block.count(0) != len(block):
                    f.seek(off)
                    f.write(block)
    sparse = rng.choice(["0", "512", "1k", "4k", "8k", "64k", "2M"])
    for out_fmt in ("raw", "qcow2"):
        ours = str(tmp_path / f"ours.{out_fmt}")
        theirs = str(tmp_path / f"theirs.{out_fmt}")
        args = ["convert", "-f", "raw", "-O", out_fmt, "-S", sparse, str(src)]
        pyqemu_img.run(*args, ours).ok()
        qemu_img.run(*args, theirs).ok()
        assert qemu_img.map(ours, out_fmt) == qemu_img.map(theirs, out_fmt), sparse
        assert _digest(ours) == _digest(theirs)


@pytest.mark.parametrize("seed", range(8))
def test_compare_random_differences(seed: int, tmp_path: pathlib.Path, qemu_img: Any,
                                    qemu_io: Any, pyqemu_img: Any) -> None:
    """A qcow2 copy of a raw image with a few random bytes changed (or appended zeroes):
    the reported offset and exit code are qemu-img's."""
    import random

    rng = random.Random(1000 + seed)
    size = rng.choice([1, 2]) << 20
    raw = tmp_path / "a.raw"
    with open(raw, "wb") as f:
        f.truncate(size)
        for _ in range(rng.randint(1, 6)):
            off = rng.randrange(0, size - 70000)
            f.seek(off)
            f.write(rng.randbytes(rng.randint(1, 70000)))
    other = str(tmp_path / "b.qcow2")
    grow = rng.random() < 0.3
    qemu_img.run("convert", "-f", "raw", "-O", "qcow2", str(raw), other).ok()
    if grow:
        qemu_img.run("resize", "-f", "qcow2", other, str(size + (1 << 20))).ok()
    cmds = []
    for _ in range(rng.randint(0, 3)):
        off = rng.randrange(0, size + ((1 << 20) if grow else 0) - 8)
        cmds.append(f"write -P {rng.randint(1, 255)} {off} {rng.randint(1, 8)}")
    if cmds:
        qemu_io.run(other, *cmds).ok()
    for extra in ([], ["-s"]):
        for a, b in ((str(raw), other), (other, str(raw))):
            q = qemu_img.compare(a, b, *extra)
            p = pyqemu_img.compare(a, b, *extra)
            assert (p.rc, p.out, p.err) == (q.rc, q.out, q.err)


@pytest.mark.parametrize("seed", range(8))
def test_rebase_random_backings(seed: int, tmp_path: pathlib.Path, qemu_img: Any,
                                qemu_io: Any, pyqemu_img: Any) -> None:
    """Safe rebase between random old and new backing files (of random sizes): the
    overlay keeps its content and gets exactly qemu-img's allocation."""
    import random

    rng = random.Random(2000 + seed)
    files: dict[str, dict[str, str]] = {}
    sizes = {"old": rng.choice([1, 2, 3]) << 20, "new": rng.choice([1, 2, 3]) << 20,
             "img": rng.choice([2, 3]) << 20}
    writes = {k: [f"write -P {rng.randint(0, 3)} {rng.randrange(0, v - 65536, 512)} "
                  f"{rng.choice([512, 4096, 65536])}" for _ in range(rng.randint(1, 8))]
              for k, v in sizes.items()}
    for who in ("p", "q"):
        d = {k: str(tmp_path / f"{who}-{k}.qcow2") for k in sizes}
        qemu_img.create("qcow2", d["old"], sizes["old"])
        qemu_img.create("qcow2", d["new"], sizes["new"])
        qemu_img.create("qcow2", d["img"], sizes["img"], "-b", d["old"], "-F", "qcow2")
        for k in sizes:
            qemu_io.run(d[k], *writes[k]).ok()
        files[who] = d
    expect = str(tmp_path / "expect.raw")
    qemu_img.run("convert", "-O", "raw", files["p"]["img"], expect).ok()
    pyqemu_img.run("rebase", "-b", files["p"]["new"], "-F", "qcow2", files["p"]["img"]).ok()
    qemu_img.run("rebase", "-b", files["q"]["new"], "-F", "qcow2", files["q"]["img"]).ok()
    assert qemu_img.compare(files["p"]["img"], expect).rc == 0
    # the same ranges are allocated in the overlay; whether a partly zeroed cluster ends
    # up as a zero cluster or as zero data is the qcow2 driver's write_zeroes (QEMU turns
    # a sub-cluster zero write into a zero cluster when the rest already reads as zero)
    assert _present(qemu_img.map(files["p"]["img"])) == \
        _present(qemu_img.map(files["q"]["img"]))


def _present(mapping: list[dict[str, Any]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for ext in mapping:
        if not ext["present"] or ext["depth"] != 0:
            continue
        if out and out[-1][1] == ext["start"]:
            out[-1] = (out[-1][0], ext["start"] + ext["length"])
        else:
            out.append((ext["start"], ext["start"] + ext["length"]))
    return out


@pytest.mark.parametrize("seed", range(10))
def test_commit_random_chains(seed: int, tmp_path: pathlib.Path, qemu_img: Any,
                              qemu_io: Any, pyqemu_img: Any) -> None:
    """commit (plain, -d, -b base) of random 3-deep chains of random sizes: content and
    per-layer allocation as qemu-img leaves them."""
    import random

    rng = random.Random(3000 + seed)
    sizes = [rng.choice([1, 2, 3]) << 20 for _ in range(3)]
    def one_write(size: int) -> str:
        length = rng.choice([4096, 65536, 131072])
        how = "-z" if rng.random() < 0.2 else f"-P {rng.randint(0, 9)}"
        return f"write {how} {rng.randrange(0, size - length, 4096)} {length}"

    writes = [[one_write(s) for _ in range(rng.randint(1, 6))] for s in sizes]
    mode = rng.choice([[], ["-d"], ["-b", "BASE"]])
    chains = {}
    for who in ("p", "q"):
        names = [str(tmp_path / f"{who}-{i}.qcow2") for i in range(3)]
        qemu_img.create("qcow2", names[0], sizes[0])
        for i in (1, 2):
            qemu_img.create("qcow2", names[i], sizes[i], "-b", names[i - 1], "-F", "qcow2")
        for name, cmds in zip(names, writes):
            qemu_io.run(name, *cmds).ok()
        chains[who] = names
    expect = str(tmp_path / "expect.raw")
    qemu_img.run("convert", "-O", "raw", chains["p"][2], expect).ok()
    for who, tool in (("p", pyqemu_img), ("q", qemu_img)):
        args = [chains[who][0] if a == "BASE" else a for a in mode]
        tool.run("commit", *args, chains[who][2]).ok()
    assert qemu_img.compare(chains["p"][2], expect).rc == 0
    for mine, real in zip(chains["p"], chains["q"]):
        assert _merge(qemu_img.map(mine)) == _merge(qemu_img.map(real)), mode


@pytest.mark.parametrize("seed", range(12))
def test_convert_random_chains(seed: int, tmp_path: pathlib.Path, qemu_img: Any,
                               qemu_io: Any, pyqemu_img: Any) -> None:
    """convert of random backing chains with random options (-B, -S, -c, -O): the
    output files are byte-identical to qemu-img's."""
    import random

    rng = random.Random(4000 + seed)
    sizes = [rng.choice([1, 2, 3]) << 20 for _ in range(rng.choice([2, 3]))]

    def one_write(size: int) -> str:
        length = rng.choice([512, 4096, 65536, 131072])
        how = rng.choice(["-z", "-P 0", f"-P {rng.randint(1, 9)}", f"-P {rng.randint(1, 9)}"])
        return f"write {how} {rng.randrange(0, size - length, 512)} {length}"

    names = [str(tmp_path / f"l{i}.qcow2") for i in range(len(sizes))]
    qemu_img.create("qcow2", names[0], sizes[0])
    for i in range(1, len(names)):
        qemu_img.create("qcow2", names[i], sizes[i], "-b", names[i - 1], "-F", "qcow2")
    for name, size in zip(names, sizes):
        qemu_io.run(name, *[one_write(size) for _ in range(rng.randint(1, 6))]).ok()
    out_fmt = rng.choice(["raw", "qcow2", "qcow2"])
    opts = ["-S", rng.choice(["0", "4k", "64k"])]
    if out_fmt == "qcow2" and rng.random() < 0.4:
        opts += ["-B", names[-2], "-F", "qcow2"]
    elif out_fmt == "qcow2" and rng.random() < 0.3:
        opts = ["-c"]
    outs = {}
    for who, tool in (("p", pyqemu_img), ("q", qemu_img)):
        outs[who] = str(tmp_path / f"{who}.{out_fmt}")
        tool.run("convert", "-O", out_fmt, *opts, names[-1], outs[who]).ok()
    assert qemu_img.compare(names[-1], outs["p"]).rc == 0
    assert _digest(outs["p"]) == _digest(outs["q"]), opts


@pytest.mark.parametrize("fmt", ["vmdk", "vdi", "vhdx", "vpc"])
@pytest.mark.parametrize("sparse", ["0", "4k", "64k"])
def test_sparse_detection_other_formats(fmt: str, sparse: str, tmp_path: pathlib.Path,
                                        qemu_img: Any, pyqemu_img: Any) -> None:
    """-S into the block-allocating formats: the same blocks allocated as by qemu-img."""
    import random

    _require(fmt)
    rng = random.Random(7)
    size = 3 << 20
    data = bytearray(size)
    pos = 0
    while pos < size:
        run = rng.choice([512, 4096, 65536, 131072, 1 << 20])
        if rng.random() < 0.5:
            data[pos:pos + run] = rng.randbytes(min(run, size - pos))
        pos += run
    src = tmp_path / "src.raw"
    src.write_bytes(bytes(data))
    outs = {}
    for who, tool in (("p", pyqemu_img), ("q", qemu_img)):
        outs[who] = str(tmp_path / f"{who}.{fmt}")
        tool.run("convert", "-f", "raw", "-O", fmt, "-S", sparse, str(src), outs[who]).ok()
    res = qemu_img.run("compare", "-f", "raw", str(src), outs["p"])
    assert res.rc == 0 and res.out.endswith("Images are identical.\n")
    strip = [{k: v for k, v in e.items() if k != "offset"} for e in qemu_img.map(outs["p"])]
    want = [{k: v for k, v in e.items() if k != "offset"} for e in qemu_img.map(outs["q"])]
    assert _merge(strip) == _merge(want)
