"""Block-level algorithms behind ``qemu-img convert/commit/rebase/compare/dd/bench``.

Every function works on open :class:`~pyqemu.block.driver.Image` objects (whole backing
chains, as :func:`pyqemu.block.open_image` opens them), so they are usable from Python
without the command line. The semantics follow QEMU 7.2's ``qemu-img.c`` and
``block/io.c`` (block status of a chain, sparse detection, commit as an active mirror),
so images and messages come out as the real qemu-img makes them.

Units: QEMU counts in 512-byte sectors here; image lengths are rounded up to a whole
sector, as ``bdrv_getlength`` does, and the rounding tail reads as zeroes.

Errors are :class:`~pyqemu.block.errors.BlockError` (``str()`` is the one-line message);
:class:`CompareError` carries qemu-img compare's exit code.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from queue import Empty, Full, Queue
from typing import Any, NamedTuple, TypeVar

from pyqemu.block.driver import Image
from pyqemu.block.errors import BlockError

__all__ = [
    "STATUS_ALLOCATED",
    "STATUS_DATA",
    "STATUS_EOF",
    "STATUS_OFFSET_VALID",
    "STATUS_ZERO",
    "BenchResult",
    "ChainStatus",
    "CompareError",
    "CompareResult",
    "Progress",
    "bench",
    "block_status_above",
    "commit",
    "compare",
    "convert",
    "dd",
    "dd_output_size",
    "find_backing_image",
    "image_length",
    "is_allocated_above",
    "rebase",
]

SECTOR = 512
#: qemu-img's IO_BUF_SIZE: the read/compare unit of convert, compare, rebase
IO_BUF_SIZE = 2 << 20
#: the most sectors convert asks block status about at once (BDRV_REQUEST_MAX_SECTORS)
_REQUEST_MAX_SECTORS = (0x7FFFFFFF & ~(SECTOR - 1)) // SECTOR
#: convert -S upper bound, in sectors (MAX_BUF_SECTORS)
MAX_BUF_SECTORS = 32768

# bdrv_block_status flags (include/block/block-common.h)
STATUS_DATA = 0x01
STATUS_ZERO = 0x02
STATUS_OFFSET_VALID = 0x04
STATUS_ALLOCATED = 0x10
STATUS_EOF = 0x20

#: ``progress(delta, max)`` as ``qemu_progress_print``: max 0 sets the percentage to
#: ``delta``; otherwise adds ``delta / 100 * max`` percent.
Progress = Callable[[float, int], None]
#: ``warn(message)`` for non-fatal warnings (``qemu-img: warning: ...``)
Warn = Callable[[str], None]

_ZERO = bytes(4 << 20)
_ZERO_SECTOR = bytes(SECTOR)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def image_length(img: Image) -> int:
    """Guest-visible length rounded up to a sector, as ``blk_getlength`` reports it."""
    size = img.virtual_size
    return -(-size // SECTOR) * SECTOR


def _read(img: Image, offset: int, length: int, size: int | None = None) -> bytes:
    """Read ``length`` bytes; what lies past the virtual size (sector tail) is zeroes."""
    if size is None:
        size = img.virtual_size
    if offset >= size:
        return bytes(length)
    n = min(length, size - offset)
    data = img.read(offset, n)
    if len(data) != n:
        raise BlockError(f"short read from '{img.filename}' at offset {offset}")
    if n < length:
        data = bytes(data) + bytes(length - n)
    return data


def _is_zero(mv: memoryview | bytes, start: int, end: int) -> bool:
    """True if ``mv[start:end]`` holds only zero bytes (memcmp speed)."""
    view = memoryview(mv)
    step = len(_ZERO)
    while start < end:
        k = min(end - start, step)
        if not _ZERO.startswith(view[start:start + k]):
            return False
        start += k
    return True


def _zero_run(mv: memoryview, s: int, e: int) -> int:
    """Number of consecutive all-zero sectors from sector ``s`` (at most ``e - s``)."""
    lo = s * SECTOR
    n = e - s
    if _is_zero(mv, lo, e * SECTOR):
        return n
    good = 0
    step = 1
    while True:
        probe = min(good + step, n)
        if _is_zero(mv, lo + good * SECTOR, lo + probe * SECTOR):
            good = probe
            step *= 2
        else:
            break
    bad = probe
    while bad - good > 1:
        mid = (good + bad) // 2
        if _is_zero(mv, lo + good * SECTOR, lo + mid * SECTOR):
            good = mid
        else:
            bad = mid
    return good


def _data_run(buf: bytes, mv: memoryview, s: int, e: int) -> int:
    """Number of consecutive sectors holding a non-zero byte from sector ``s``."""
    pos = s * SECTOR
    end = e * SECTOR
    while True:
        q = buf.find(_ZERO_SECTOR, pos, end)
        if q < 0:
            return e - s
        t = -(-q // SECTOR)
        if (t + 1) * SECTOR > end:
            return e - s
        if _ZERO_SECTOR.startswith(mv[t * SECTOR:(t + 1) * SECTOR]):
            return t - s
        pos = t * SECTOR


def _is_allocated_sectors(buf: bytes, mv: memoryview, s: int, e: int, sector_num: int,
                          alignment: int) -> tuple[bool, int]:
    """(has data, run length) of the sectors from ``s``; ``sector_num`` is the target
    sector of ``s``. Run ends are aligned to ``alignment`` sectors as QEMU does, so
    consecutive writes stay aligned."""
    n = e - s
    if n <= 0:
        return False, 0
    is_zero = _is_zero(mv, s * SECTOR, (s + 1) * SECTOR)
    i = _zero_run(mv, s, e) if is_zero else _data_run(buf, mv, s, e)
    if i == n:
        return not is_zero, i
    tail = (sector_num + i) & (alignment - 1)
    if tail:
        if is_zero and i <= tail:
            # the next sector is data and rewrites this tail anyway
            is_zero = False
        if not is_zero:
            i = min(i + alignment - tail, n)
        else:
            i -= tail
    return not is_zero, i


def _is_allocated_sectors_min(buf: bytes, mv: memoryview, s: int, e: int, min_sparse: int,
                              sector_num: int, alignment: int) -> tuple[bool, int]:
    """Like :func:`_is_allocated_sectors`, but a data run swallows zero gaps shorter
    than ``min_sparse`` sectors (qemu-img's is_allocated_sectors_min)."""
    min_sparse = min(min_sparse, e - s)
    data, k = _is_allocated_sectors(buf, mv, s, e, sector_num, alignment)
    if not data:
        return False, k
    num_used = num_checked = k
    pos = s + k
    sn = sector_num + k
    while pos < e:
        data, k = _is_allocated_sectors(buf, mv, pos, e, sn, alignment)
        pos += k
        sn += k
        num_checked += k
        if data:
            num_used = num_checked
        elif k >= min_sparse:
            break
    return True, num_used


def _first_difference(a: bytes, b: bytes, start: int, end: int) -> tuple[bool, int]:
    """qemu-img's compare_buffers on ``a[start:end]`` and ``b[start:end]``: (first sector
    differs, length of the prefix, in whole sectors, whose sectors share that status)."""
    a = bytes(a)
    mb = memoryview(b)
    length = end - start

    def same(lo: int, hi: int) -> bool:
        return a.startswith(mb[start + lo:start + hi], start + lo)

    first = min(length, SECTOR)
    if same(0, first):
        # equal prefix: bisect for the first differing sector
        if same(0, length):
            return False, length
        lo, hi = first, length  # [0, lo) equal; a difference lies in [lo, hi)
        while hi - lo > SECTOR:
            mid = lo + max(1, (hi - lo) // 2 // SECTOR) * SECTOR
            if same(lo, mid):
                lo = mid
            else:
                hi = mid
        return False, lo
    i = first
    while i < length:
        k = min(length - i, SECTOR)
        if same(i, i + k):
            break
        i += k
    return True, i


def _can(img: Image, method: str) -> bool:
    """True if ``img``'s format overrides ``Image.<method>`` (the feature exists)."""
    return getattr(type(img), method) is not getattr(Image, method)


class _RateLimit:
    """A simple average-rate limiter for -r (bytes per second)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0

    def account(self, nbytes: int) -> None:
        if self.rate <= 0:
            return
        self.done += nbytes
        due = self.start + self.done / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _no_progress(delta: float, max_: int) -> None:
    return None


# ---------------------------------------------------------------------------------------
# block status of a chain (bdrv_block_status_above)
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ChainStatus:
    """Block status of ``[offset, offset+length)`` seen through a chain.

    ``flags`` are ``STATUS_*`` bits; ``depth`` is 1 for the top layer, 2 for its
    backing file, ... (the layer that answered).
    """

    flags: int
    length: int
    depth: int
    layer: Image | None = None
    host_offset: int | None = None

    @property
    def allocated(self) -> bool:
        return bool(self.flags & STATUS_ALLOCATED)

    @property
    def data(self) -> bool:
        return bool(self.flags & STATUS_DATA)

    @property
    def zero(self) -> bool:
        return bool(self.flags & STATUS_ZERO)


class _Sizes(dict[int, tuple[int, int]]):
    """Cache of (virtual size, sector-rounded length) per image for one operation."""

    def get_sizes(self, img: Image) -> tuple[int, int]:
        key = id(img)
        val = self.get(key)
        if val is None:
            vsize = img.virtual_size
            val = (vsize, -(-vsize // SECTOR) * SECTOR)
            self[key] = val
        return val


def _layer_status(layer: Image, offset: int, length: int,
                  sizes: _Sizes | None = None) -> tuple[int, int, int | None]:
    """One layer's status (flags, bytes, host offset) as bdrv_co_block_status gives it."""
    if sizes is None:
        sizes = _Sizes()
    vsize, total = sizes.get_sizes(layer)
    if offset >= total:
        return STATUS_EOF, 0, None
    length = min(length, total - offset)
    if length <= 0:
        return 0, 0, None
    if layer.format_name == "vmdk":
        length = min(length, _vmdk_answer_limit(layer, offset))
    host: int | None = None
    if offset >= vsize:  # the zero tail of a size rounded up to a sector
        flags = STATUS_DATA | STATUS_ALLOCATED
        pnum = length
    else:
        st = layer.block_status(offset, min(length, vsize - offset))
        pnum = min(st.length, length) if st.length > 0 else min(length, vsize - offset)
        if offset + pnum == vsize and vsize < total and pnum < length:
            pnum = min(length, total - offset)
        flags = 0
        if st.allocated:
            flags |= STATUS_ALLOCATED
            if st.data:
                flags |= STATUS_DATA
            if st.zero:
                flags |= STATUS_ZERO
            if st.host_offset is not None:
                flags |= STATUS_OFFSET_VALID
                host = st.host_offset
        else:
            backing = layer.backing
            if backing is None:
                if layer.supports_backing or st.zero:
                    flags |= STATUS_ZERO
            elif offset >= sizes.get_sizes(backing)[1]:
                flags |= STATUS_ZERO
    if offset + pnum == total:
        flags |= STATUS_EOF
    return flags, pnum, host


def _vmdk_answer_limit(layer: Image, offset: int) -> int:
    """QEMU's vmdk_co_block_status answers one grain at a time (a flat extent counts as
    one grain). Convert's request sizes and compare -s's EOF flag depend on it, so the
    merged runs of our vmdk driver are cut the same way here."""
    for ext in getattr(layer, "extents", ()):
        end = ext.end_sector * SECTOR
        if offset < end:
            if ext.flat:
                return end - offset
            start = ext.start_sector * SECTOR
            grain = ext.cluster_bytes
            return grain - (offset - start) % grain
    return 1 << 62


def block_status_above(top: Image, base: Image | None, offset: int, length: int, *,
                       include_base: bool = False, sizes: _Sizes | None = None) -> ChainStatus:
    """Status of the chain from ``top`` down to (excluding, unless ``include_base``)
    ``base``; ``base=None`` means the whole chain. The first layer that allocates the
    range answers; zeroes synthesised past a short backing file count as allocated.
    ``sizes`` caches image sizes across calls of one operation (sizes must not change)."""
    if not include_base and top is base:
        return ChainStatus(0, length, 0)
    if sizes is None:
        sizes = _Sizes()
    flags, pnum, host = _layer_status(top, offset, length, sizes)
    depth = 1
    layer: Image = top
    if pnum == 0 or flags & STATUS_ALLOCATED or top is base:
        return ChainStatus(flags, pnum, depth, layer, host)
    eof = offset + pnum if flags & STATUS_EOF else 0
    nbytes = pnum
    p = top.backing
    while p is not None and (include_base or p is not base):
        flags, pnum, host = _layer_status(p, offset, nbytes, sizes)
        depth += 1
        layer = p
        if pnum == 0:
            # the layer above deferred to this short one: zeroes past its end
            pnum = nbytes
            flags = STATUS_ZERO | STATUS_ALLOCATED
            host = None
            break
        if flags & STATUS_ALLOCATED:
            flags &= ~STATUS_EOF
            break
        if p is base:
            break
        nbytes = pnum
        p = p.backing
    if offset + pnum == eof:
        flags |= STATUS_EOF
    return ChainStatus(flags, pnum, depth, layer, host)


def is_allocated_above(top: Image, base: Image | None, offset: int, length: int, *,
                       include_base: bool = False) -> tuple[bool, int]:
    """(allocated in a layer from ``top`` down to ``base``, extent length)."""
    st = block_status_above(top, base, offset, length, include_base=include_base)
    return st.allocated, st.length


def find_backing_image(img: Image, name: str) -> Image | None:
    """The image of ``img``'s backing chain that ``name`` designates (by the name
    stored in the layer above or by path), as bdrv_find_backing_image."""
    cur: Image | None = img
    while cur is not None and cur.backing is not None:
        if cur.backing_filename is not None and name == cur.backing_filename:
            return cur.backing
        base_dir = os.path.dirname(cur.filename)
        cand = name if os.path.isabs(name) else os.path.join(base_dir, name)
        try:
            if os.path.realpath(cand) == os.path.realpath(cur.backing.filename):
                return cur.backing
        except (OSError, ValueError):
            pass
        cur = cur.backing
    return None


# ---------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------
_BLK_DATA, _BLK_ZERO, _BLK_BACKING_FILE = 0, 1, 2


class _AheadSlice(NamedTuple):
    """A copy request's data inside a larger read-ahead buffer (from sector ``base``)."""

    data: bytes
    base: int


class _Convert:
    """State of one conversion (qemu-img's ImgConvertState, run in order)."""

    def __init__(self, sources: Sequence[Image], target: Image, *, min_sparse: int,
                 compressed: bool, target_is_new: bool, target_has_backing: bool,
                 target_is_zero: bool, salvage: bool, rate_limit: int,
                 progress: Progress, warn: Warn | None, buf_size: int,
                 prefetch: bool = True, workers: int = 1) -> None:
        self.src = list(sources)
        self.src_sectors = [image_length(s) // SECTOR for s in self.src]
        self.src_alignment = [max(1, (s.cluster_size or SECTOR) // SECTOR) for s in self.src]
        self.total_sectors = sum(self.src_sectors)
        self.target = target
        self.min_sparse = min_sparse // SECTOR
        self.salvage = salvage
        self.warn = warn
        self.progress = progress
        self.rate = _RateLimit(rate_limit)
        self.target_has_backing = target_has_backing
        self.buf_sectors = max(1, buf_size // SECTOR)
        # align writes to the sparse granularity to avoid read-modify-write
        self.alignment = 1 << max(0, self.min_sparse.bit_length() - 1) if self.min_sparse else 1
        has_zero_init = target_is_zero
        if not has_zero_init and target_is_new and self.min_sparse and not target_has_backing:
            has_zero_init = _has_zero_init(target)
        self.has_zero_init = has_zero_init
        self.compressed = compressed or _needs_compressed_writes(target)
        self.cluster_sectors = (target.cluster_size or 0) // SECTOR
        if target_has_backing and target_is_new and target.backing is not None:
            self.target_backing_sectors = image_length(target.backing) // SECTOR
        else:
            self.target_backing_sectors = -1
        self.sizes = _Sizes()
        #: read ahead in a helper thread (not for -r: the rate applies to writes only)
        self.prefetch = prefetch and rate_limit <= 0
        self.status = _BLK_DATA
        self.sector_next_status = 0
        self.allocated_sectors = 0
        self.allocated_done = 0
        #: (first sector, data) of the current read-ahead (reader side only)
        self._ahead: tuple[int, bytes] | None = None
        #: data written but not yet sent: (read-ahead buffer, its guest offset, first and
        #: end guest byte), so adjacent slices of one buffer go out in one write
        self._pending: tuple[bytes, int, int, int] | None = None
        #: -c with -m N: clusters being compressed by a thread pool, written in order
        self._workers = workers if hasattr(target, "compress_cluster") else 1
        self._pool: Any = None
        self._compressing: deque[tuple[int, bytes, Any]] = deque()

    def select_part(self, sector_num: int) -> tuple[int, int]:
        cur = 0
        cur_offset = 0
        while sector_num - cur_offset >= self.src_sectors[cur]:
            cur_offset += self.src_sectors[cur]
            cur += 1
        return cur, cur_offset

    def iteration_sectors(self, sector_num: int) -> int:
        """Length of the next request and its status (``self.status``)."""
        cur, cur_offset = self.select_part(sector_num)
        n = min(self.total_sectors - sector_num, _REQUEST_MAX_SECTORS)
        post_backing_zero = False
        tbs = self.target_backing_sectors
        if tbs >= 0:
            if sector_num >= tbs:
                post_backing_zero = True
            elif sector_num + n > tbs:
                n = tbs - sector_num
        if self.sector_next_status <= sector_num:
            offset = (sector_num - cur_offset) * SECTOR
            src = self.src[cur]
            base = src.backing if self.target_has_backing else None
            while True:
                try:
                    st = block_status_above(src, base, offset, n * SECTOR,
                                            sizes=self.sizes)
                    flags, count = st.flags, st.length
                    break
                except BlockError as exc:
                    if not self.salvage:
                        raise BlockError(
                            f"error while reading block status at offset {offset}: {exc}"
                        ) from exc
                    if n == 1:
                        if self.warn is not None:
                            self.warn(f"error while reading block status at offset "
                                      f"{offset}: {exc}")
                        flags, count = STATUS_DATA, SECTOR
                        break
                    n = -(-n // 4)
            n = max(1, -(-count // SECTOR))
            tail = (sector_num - cur_offset + n) % self.src_alignment[cur]
            if n > tail:
                n -= tail
            if flags & STATUS_ZERO:
                self.status = _BLK_BACKING_FILE if post_backing_zero else _BLK_ZERO
            elif flags & STATUS_DATA:
                self.status = _BLK_DATA
            else:
                self.status = _BLK_BACKING_FILE if self.target_has_backing else _BLK_DATA
            self.sector_next_status = sector_num + n
        n = min(n, self.sector_next_status - sector_num)
        if self.status == _BLK_DATA:
            n = min(n, self.buf_sectors)
        # compressed clusters are written whole
        if self.compressed:
            if n < self.cluster_sectors:
                n = min(self.cluster_sectors, self.total_sectors - sector_num)
                self.status = _BLK_DATA
            else:
                n -= n % self.cluster_sectors
        return n

    def read(self, sector_num: int, nb_sectors: int) -> bytes:
        parts: list[bytes] = []
        while nb_sectors > 0:
            cur, cur_offset = self.select_part(sector_num)
            src = self.src[cur]
            n = min(nb_sectors, self.src_sectors[cur] - (sector_num - cur_offset))
            offset = (sector_num - cur_offset) * SECTOR
            try:
                parts.append(_read(src, offset, n * SECTOR, self.sizes.get_sizes(src)[0]))
            except BlockError as exc:
                if not self.salvage:
                    raise BlockError(
                        f"error while reading at byte {sector_num * SECTOR}: {exc}"
                    ) from exc
                parts.append(self._salvage_read(src, offset, n))
            sector_num += n
            nb_sectors -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_ahead(self, sector_num: int, n: int) -> _AheadSlice | None:
        """The slice for request (sector_num, n) of one large read covering the rest of
        its data extent (up to _READ_AHEAD), or None to read the request alone (short
        extent, extent crossing sources, compression, or the large read failed: then the
        request's own read reports errors at the offsets qemu-img names)."""
        cache = self._ahead
        if cache is not None and cache[0] <= sector_num and \
                sector_num + n <= cache[0] + len(cache[1]) // SECTOR:
            return _AheadSlice(cache[1], sector_num - cache[0])
        self._ahead = None
        if self.compressed or self.salvage or n < self.buf_sectors:
            return None
        cur, cur_offset = self.select_part(sector_num)
        end = min(self.sector_next_status, cur_offset + self.src_sectors[cur],
                  sector_num + _READ_AHEAD // SECTOR)
        if end - sector_num <= n:
            return None
        try:
            data = self.read(sector_num, end - sector_num)
        except BlockError:
            return None
        self._ahead = (sector_num, data)
        return _AheadSlice(data, 0)

    def _salvage_read(self, src: Image, offset: int, nb_sectors: int) -> bytes:
        out = bytearray()
        for i in range(nb_sectors):
            off = offset + i * SECTOR
            try:
                out += _read(src, off, SECTOR)
            except BlockError as exc:
                if self.warn is not None:
                    self.warn(f"error while reading offset {off}: {exc}")
                out += _ZERO_SECTOR
        return bytes(out)

    def write(self, sector_num: int, nb_sectors: int, buf: bytes, status: int, *,
              base: int = 0, ahead: bool = False) -> None:
        """Write request (sector_num, nb_sectors) whose data starts at sector ``base`` of
        ``buf``; ``ahead``: ``buf`` is a read-ahead buffer (adjacent writes coalesce)."""
        if not isinstance(buf, bytes):
            # zero scanning needs bytes.find; a driver or the prefetch thread may hand a
            # view; and the target may still be writing it after this returns
            # (set_write_behind), so it must not change
            buf = bytes(buf)
        target = self.target
        mv = memoryview(buf)
        pos = base  # sector index inside buf
        first = (sector_num - base) * SECTOR if ahead else -1  # guest byte of buf[0]
        while nb_sectors > 0:
            n = nb_sectors
            if status == _BLK_BACKING_FILE:
                # leave it unallocated: the backing file shows through
                break
            zero = status == _BLK_ZERO
            if status == _BLK_DATA:
                if not self.min_sparse:
                    self._write_data(sector_num, mv[pos * SECTOR:(pos + n) * SECTOR], buf, first)
                elif not self.compressed:
                    data, n = _is_allocated_sectors_min(buf, mv, pos, pos + n,
                                                        self.min_sparse, sector_num,
                                                        self.alignment)
                    if data:
                        self._write_data(sector_num, mv[pos * SECTOR:(pos + n) * SECTOR], buf, first)
                    else:
                        zero = True
                elif not _is_zero(mv, pos * SECTOR, (pos + n) * SECTOR):
                    self._write_data(sector_num, mv[pos * SECTOR:(pos + n) * SECTOR], buf, first)
                else:
                    zero = True
            if zero and not self.has_zero_init:
                self.flush_pending()
                target.write_zeroes(sector_num * SECTOR, n * SECTOR, may_unmap=True)
            sector_num += n
            nb_sectors -= n
            pos += n

    def _write_data(self, sector_num: int, data: memoryview, buf: bytes = b"",
                    first: int = -1) -> None:
        offset = sector_num * SECTOR
        if self.compressed:
            if self._workers > 1 and self.rate.rate <= 0:
                self._compress_async(offset, bytes(data))
                return
            self.target.write_compressed(offset, bytes(data))
            self.rate.account(len(data))
            return
        if first < 0 or self.rate.rate > 0:
            self.flush_pending()
            self.target.write(offset, data)
            self.rate.account(len(data))
            return
        # a slice of a read-ahead buffer: adjacent slices go out in one write
        pend = self._pending
        if pend is not None and pend[0] is buf and pend[3] == offset:
            self._pending = (buf, pend[1], pend[2], offset + len(data))
            return
        self.flush_pending()
        self._pending = (buf, first, offset, offset + len(data))

    def _compress_async(self, offset: int, data: bytes) -> None:
        """Queue one compressed cluster: compressed in the pool, written (and so placed
        in the image) strictly in request order, which keeps the output identical."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="compress")
        compress = self.target.compress_cluster  # type: ignore[attr-defined]
        self._compressing.append((offset, data, self._pool.submit(compress, data)))
        if len(self._compressing) > 2 * self._workers:
            self._write_compressed_one()

    def _write_compressed_one(self) -> None:
        offset, data, fut = self._compressing.popleft()
        try:
            self.target.write_compressed(  # type: ignore[call-arg]
                offset, data, compressed=fut.result())
        except BlockError as exc:
            raise BlockError(f"error while writing at byte {offset}: {exc}") from exc
        self.rate.account(len(data))

    def drain(self) -> None:
        """Write every queued compressed cluster."""
        while self._compressing:
            self._write_compressed_one()

    def stop_pool(self) -> None:
        """Drop what is still queued (after an error) and stop the compression pool."""
        self._compressing.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def flush_pending(self) -> None:
        """Send the coalesced data write (and any queued compressed clusters)."""
        if self._compressing:
            self.drain()
        pend = self._pending
        if pend is None:
            return
        self._pending = None
        obj, first, start, end = pend
        try:
            self.target.write(start, memoryview(obj)[start - first:end - first])
        except BlockError as exc:
            raise BlockError(f"error while writing at byte {start}: {exc}") from exc
        self.rate.account(end - start)

    def run(self) -> None:
        if self.compressed:
            if self.cluster_sectors <= 0 or self.cluster_sectors > MAX_BUF_SECTORS:
                raise BlockError("invalid cluster size")
            self.buf_sectors = self.cluster_sectors
        # first pass: how much will be copied (for the progress meter)
        sector_num = 0
        if self.progress is not _no_progress:
            while sector_num < self.total_sectors:
                n = self.iteration_sectors(sector_num)
                if self.status == _BLK_DATA or (not self.min_sparse
                                                and self.status == _BLK_ZERO):
                    self.allocated_sectors += n
                sector_num += n
            self.sector_next_status = 0
        requests = self.requests()
        if self.prefetch:
            requests = _prefetched(requests, depth=4)
        for sector_num, n, status, counts, buf in requests:
            if counts:
                self.allocated_done += n
                if self.allocated_sectors:
                    self.progress(100.0 * self.allocated_done / self.allocated_sectors, 0)
            if isinstance(buf, BaseException):
                raise buf
            try:
                if isinstance(buf, _AheadSlice):
                    self.write(sector_num, n, buf.data, status, base=buf.base, ahead=True)
                else:
                    self.write(sector_num, n, buf, status)
            except BlockError as exc:
                if str(exc).startswith("error while writing at byte "):
                    raise
                raise BlockError(
                    f"error while writing at byte {sector_num * SECTOR}: {exc}"
                ) from exc
        self.flush_pending()

    def requests(self) -> Iterator[tuple[int, int, int, bool,
                                         bytes | _AheadSlice | BaseException]]:
        """The copy requests in order: (sector, count, status, counts for progress,
        data read or the read error)."""
        sector_num = 0
        while sector_num < self.total_sectors:
            n = self.iteration_sectors(sector_num)
            status = self.status
            if not self.min_sparse and status == _BLK_ZERO:
                n = min(n, self.buf_sectors)
            counts = status == _BLK_DATA or (not self.min_sparse and status == _BLK_ZERO)
            buf: bytes | _AheadSlice | BaseException
            if status == _BLK_DATA:
                big = self._read_ahead(sector_num, n)
                if big is not None:
                    buf = big
                else:
                    try:
                        buf = self.read(sector_num, n)
                    except BlockError as exc:
                        buf = exc
            elif not self.min_sparse and status == _BLK_ZERO:
                status = _BLK_DATA
                buf = _ZERO[:n * SECTOR] if n * SECTOR <= len(_ZERO) else bytes(n * SECTOR)
            else:
                buf = b""
            yield sector_num, n, status, counts, buf
            sector_num += n


_T = TypeVar("_T")

#: a data extent longer than the copy buffer is read this much at once (one Image.read,
#: so one host read for contiguous clusters) and then handed out in the buffer-sized
#: requests qemu-img makes, so every per-request decision stays the same
_READ_AHEAD = 32 << 20


def _prefetched(items: Iterator[_T], depth: int) -> Iterator[_T]:
    """Run ``items`` in a helper thread, ``depth`` items ahead of the consumer: reading
    the sources (block status, decompression, host reads: the GIL is released in the
    system calls) overlaps with writing the target, as qemu-img's parallel requests do.
    Only the helper thread touches the sources; the caller only the target."""
    queue: Queue[tuple[bool, object]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put((True, item), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((False, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            queue.put((False, exc))

    worker = threading.Thread(target=produce, name="convert-read", daemon=True)
    worker.start()
    try:
        while True:
            more, value = queue.get()
            if not more:
                if isinstance(value, BaseException):
                    raise value
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():
            try:
                queue.get_nowait()
            except Empty:
                pass
            worker.join(timeout=0.05)


def _needs_compressed_writes(img: Image) -> bool:
    """bdrv_get_info's needs_compressed_writes (vmdk streamOptimized)."""
    attr = getattr(img, "needs_compressed_writes", None)
    if attr is not None:
        return bool(attr() if callable(attr) else attr)
    extents = getattr(img, "extents", None)
    if extents:
        return bool(getattr(extents[0], "compressed", False))
    return False


def _has_zero_init(img: Image) -> bool:
    """Whether a freshly created ``img`` reads as zeroes (bdrv_has_zero_init)."""
    attr = getattr(img, "has_zero_init", None)
    if callable(attr):
        return bool(attr())
    if attr is not None:
        return bool(attr)
    return True


def convert(sources: Sequence[Image], target: Image, *, min_sparse: int = 4096,
            compressed: bool = False, target_is_new: bool = True,
            target_has_backing: bool = False, target_is_zero: bool = False,
            salvage: bool = False, rate_limit: int = 0, progress: Progress | None = None,
            warn: Warn | None = None, buf_size: int = IO_BUF_SIZE,
            prefetch: bool = True, coroutines: int = 8, out_of_order: bool = False) -> None:
    """Copy the concatenation of ``sources`` into ``target`` (qemu-img convert).

    ``min_sparse`` (bytes, multiple of 512; 0 = fully allocate) is -S: zero runs at least
    that long become zero/unallocated areas. ``target_has_backing`` (-B) leaves areas the
    sources' top layer does not allocate unallocated; ``target_is_new`` with a target that
    reads as zeroes (or ``target_is_zero``) skips zero writes. ``compressed`` (-c) writes
    whole clusters with ``write_compressed``. ``prefetch`` reads the sources in a helper
    thread while the target is written (the sources must not be used meanwhile).
    ``coroutines`` (-m) is the number of clusters compressed at once, in threads (up to
    the host's CPUs) for a target that offers ``compress_cluster`` (qcow2); they are
    still written in order, so the output is the same for any number. ``out_of_order``
    (-W) without compression: data writes finish in any order, written by ``coroutines``
    threads (up to 4, see :meth:`Image.set_write_behind`); clusters are still allocated
    in request order, so the image is the same.
    """
    if min_sparse < 0 or min_sparse % SECTOR or min_sparse // SECTOR > MAX_BUF_SECTORS:
        raise BlockError(
            "Invalid buffer size for sparse output specified. Valid sizes are multiples "
            f"of {SECTOR} up to {MAX_BUF_SECTORS * SECTOR}. Select 0 to disable sparse "
            "detection (fully allocates output)."
        )
    if not sources:
        raise BlockError("Must specify image file name")
    total = sum(image_length(s) for s in sources)
    if image_length(target) < total:
        raise BlockError("output file is smaller than input file")
    if compressed and not target.supports_compression:
        raise BlockError("Compression not supported for this file format")
    state = _Convert(sources, target, min_sparse=min_sparse, compressed=compressed,
                     target_is_new=target_is_new, target_has_backing=target_has_backing,
                     target_is_zero=target_is_zero, salvage=salvage, rate_limit=rate_limit,
                     progress=progress or _no_progress, warn=warn,
                     buf_size=max(buf_size, IO_BUF_SIZE), prefetch=prefetch,
                     workers=min(coroutines, os.cpu_count() or 1))
    # -W without -c: data writes go out in N threads (at most 4: a few keep the disk
    # busy while this thread reads and scans the next buffer), allocation still in
    # request order, so the image is the one the in-order copy makes. Not by default:
    # on the 2-CPU bench machine it bought no time and cost up to a third more CPU
    # (buffers in flight are not reused: fresh pages)
    behind = min(coroutines, 4) if out_of_order and not state.compressed and \
        rate_limit <= 0 else 1
    if behind > 1:
        target.set_write_behind(behind)
    try:
        state.run()
    finally:
        state.stop_pool()
        if behind > 1:
            target.set_write_behind(1)
    if state.compressed:
        _compressed_eof(target)


def _compressed_eof(target: Image) -> None:
    """QEMU ends a compressed conversion with a zero-length compressed write, which
    aligns the image file's end to a sector. Drivers that do not take that signal get
    the same alignment of their file here."""
    try:
        target.write_compressed(0, b"")
        return
    except BlockError:
        pass
    target.flush()
    size = target.file.size()
    if size % SECTOR:
        target.file.truncate(size + SECTOR - size % SECTOR)

# ---------------------------------------------------------------------------------------
# commit
# ---------------------------------------------------------------------------------------
def commit(top: Image, base: Image | None = None, *, drop: bool = False,
           rate_limit: int = 0, progress: Progress | None = None,
           buf_size: int = IO_BUF_SIZE) -> Image:
    """Commit ``top`` (and the layers between it and ``base``) into ``base``.

    ``base`` defaults to ``top``'s immediate backing file and must be opened writable.
    Like QEMU's active commit: ``base`` grows to ``top``'s size, every range allocated
    above ``base`` is copied (zero ranges as zero writes), then ``top`` is emptied
    unless ``drop`` (formats that cannot be emptied are left as they are). Returns
    the base image.
    """
    prog = progress or _no_progress
    if base is None:
        base = top.backing
        if base is None:
            raise BlockError("Image does not have a backing file")
    else:
        layer = top.backing
        while layer is not None and layer is not base:
            layer = layer.backing
        if layer is None:
            raise BlockError("base is not in the backing chain of the image")
    if base.readonly:
        raise BlockError(f"Could not reopen '{base.filename}' read-write")
    length = image_length(top)
    old_length = image_length(base)
    if old_length < length:
        base.truncate(length)
        # bdrv_co_truncate: growing an image whose backing file is longer than it was
        # must not let the backing file's data show through (BDRV_REQ_ZERO_WRITE)
        below = base.backing
        if below is not None and image_length(below) > old_length:
            base.write_zeroes(old_length, length - old_length)
    rate = _RateLimit(rate_limit)
    # the dirty map: ranges allocated above base
    dirty: list[tuple[int, int]] = []
    offset = 0
    while offset < length:
        st = block_status_above(top, base, offset, length - offset)
        n = max(st.length, SECTOR)
        if st.allocated:
            if dirty and dirty[-1][0] + dirty[-1][1] == offset:
                dirty[-1] = (dirty[-1][0], dirty[-1][1] + n)
            else:
                dirty.append((offset, n))
        offset += n
    total = sum(n for _, n in dirty)
    done = 0
    prog(0.0, 0)
    for start, n in dirty:
        end = start + n
        pos = start
        while pos < end:
            st = block_status_above(top, base, pos, min(end - pos, buf_size))
            k = max(min(st.length, end - pos), 1)
            if st.flags & STATUS_DATA or not st.flags & STATUS_ZERO:
                base.write(pos, _read(top, pos, k))
                rate.account(k)
            else:
                base.write_zeroes(pos, k, may_unmap=True)
            pos += k
            done += k
            prog(done * 100.0 / total if total else 100.0, 0)
    base.flush()
    if not drop and _can(top, "make_empty"):
        top.make_empty()
    prog(100.0, 0)
    return base


# ---------------------------------------------------------------------------------------
# rebase
# ---------------------------------------------------------------------------------------
def rebase(img: Image, new_backing: Image | None, backing_filename: str | None,
           backing_fmt: str | None, *, unsafe: bool = False,
           progress: Progress | None = None) -> None:
    """Change ``img``'s backing file to ``backing_filename`` (None or "" removes it).

    Safe mode (``unsafe=False``): ``img`` must be open read-write with its old backing
    chain attached and ``new_backing`` opened (None when removing it, or a member of the
    old chain); every range ``img`` leaves unallocated whose content differs between the
    old and the new backing is copied into ``img`` first, so the guest-visible content
    does not change. Unsafe mode only rewrites the reference.
    """
    prog = progress or _no_progress
    if not unsafe:
        old = img.backing
        prefix: Image | None = None
        if new_backing is not None:
            layer = old
            while layer is not None:
                if layer is new_backing:
                    prefix = new_backing
                    break
                layer = layer.backing
        size = image_length(img)
        old_size = image_length(old) if old is not None else 0
        new_size = image_length(new_backing) if new_backing is not None else 0
        step_progress = 100.0 / (size / min(size, IO_BUF_SIZE)) if size else 0.0
        offset = 0
        while offset < size:
            n = min(IO_BUF_SIZE, size - offset)
            allocated, n = is_allocated_above(img, img, offset, n, include_base=True)
            if allocated:
                offset += n
                continue
            if prefix is not None and old is not None:
                changed, n = is_allocated_above(old, prefix, offset, n)
                if not changed:
                    offset += n
                    continue
            old_is_zero = False
            if offset >= old_size or old is None:
                buf_old = bytes(n)
                old_is_zero = True
            else:
                n = min(n, old_size - offset)
                try:
                    buf_old = _read(old, offset, n)
                except BlockError as exc:
                    raise BlockError("error while reading from old backing file") from exc
            if offset >= new_size or new_backing is None:
                buf_new = bytes(n)
            else:
                n = min(n, new_size - offset)
                try:
                    buf_new = _read(new_backing, offset, n)
                except BlockError as exc:
                    raise BlockError("error while reading from new backing file") from exc
                if len(buf_old) > n:
                    buf_old = buf_old[:n]
            written = 0
            while written < n:
                differ, pnum = _first_difference(buf_old, buf_new, written, n)
                if differ:
                    try:
                        if old_is_zero:
                            img.write_zeroes(offset + written, pnum)
                        else:
                            img.write(offset + written,
                                      memoryview(buf_old)[written:written + pnum])
                    except BlockError as exc:
                        raise BlockError(f"Error while writing to COW image: {exc}") from exc
                written += pnum
            prog(step_progress, 100)
            offset += n
    name = backing_filename or None
    if name is not None and not backing_fmt:
        raise BlockError(f"Could not change the backing file to '{name}': backing "
                         "format must be specified")
    if not _can(img, "set_backing_file") or (name is not None and not img.supports_backing):
        raise BlockError(f"Could not change the backing file to '{backing_filename or ''}': "
                         "Operation not supported")
    try:
        img.set_backing_file(name, backing_fmt if name is not None else None)
    except BlockError as exc:
        raise BlockError(f"Could not change the backing file to '{backing_filename or ''}'"
                         f": {exc}") from exc
    prog(100.0, 0)


# ---------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------
class CompareError(BlockError):
    """A failure of ``compare`` with qemu-img's exit code (3 status, 4 read error)."""

    def __init__(self, msg: str, exit_code: int) -> None:
        super().__init__(msg)
        self.exit_code = exit_code


@dataclasses.dataclass
class CompareResult:
    """Outcome of :func:`compare`: ``exit_code`` 0 identical, 1 different; ``messages``
    are the lines qemu-img prints on stdout (suppressed by -q), in order."""

    exit_code: int
    messages: list[str]
    mismatch_offset: int | None = None

    @property
    def identical(self) -> bool:
        return self.exit_code == 0


class _MessageList(list[str]):
    """The lines compare prints, forwarded to a callback as they are added."""

    def __init__(self, sink: Callable[[str], None] | None) -> None:
        super().__init__()
        self.sink = sink

    def append(self, line: str) -> None:
        super().append(line)
        if self.sink is not None:
            self.sink(line)


class _StatusCursor:
    """Block status of one image walked front to back: an extent's status is asked once
    and reused until the walk leaves it (asking again at every chunk of a long extent
    would make the drivers walk its remainder each time)."""

    def __init__(self, img: Image, name: str) -> None:
        self.img = img
        self.name = name
        self.start = 0
        self.end = 0
        self.flags = 0
        self.sizes = _Sizes()

    def at(self, offset: int, total: int) -> ChainStatus:
        if not self.start <= offset < self.end:
            try:
                st = block_status_above(self.img, None, offset, total - offset,
                                        sizes=self.sizes)
            except BlockError as exc:
                raise CompareError(f"Sector allocation test failed for {self.name}", 3) \
                    from exc
            self.start, self.end, self.flags = offset, offset + st.length, st.flags
        return ChainStatus(self.flags, self.end - offset, 0)


def _read_or_fail(img: Image, offset: int, length: int, name: str) -> bytes:
    try:
        return _read(img, offset, length)
    except BlockError as exc:
        raise CompareError(f"Error while reading offset {offset} of {name}: {exc}", 4) \
            from exc


def _first_nonzero_sector(buf: bytes) -> int:
    """Byte index of the first sector holding a non-zero byte, or -1 (find_nonzero)."""
    mv = memoryview(buf)
    if _is_zero(mv, 0, len(buf)):
        return -1
    n = -(-len(buf) // SECTOR)
    full = len(buf) // SECTOR
    padded = buf if full == n else bytes(buf) + bytes(n * SECTOR - len(buf))
    return _zero_run(memoryview(padded), 0, n) * SECTOR


def compare(img1: Image, img2: Image, *, strict: bool = False,
            progress: Progress | None = None, names: tuple[str, str] = ("", ""),
            message: Callable[[str], None] | None = None) -> CompareResult:
    """Compare the guest-visible content of two images (qemu-img compare).

    Without ``strict``, images of different sizes are equal when the longer one reads
    as zeroes past the shorter; ``strict`` fails on a size difference or any difference
    in block status. Raises :class:`CompareError` (exit code 3 or 4) on I/O failures.
    ``message`` receives each stdout line as it is produced (between progress updates).
    """
    prog = progress or _no_progress
    name1 = names[0] or img1.filename
    name2 = names[1] or img2.filename
    total1 = image_length(img1)
    total2 = image_length(img2)
    total = min(total1, total2)
    progress_base = max(total1, total2)
    messages = _MessageList(message)
    prog(0, 100)
    if strict and total1 != total2:
        messages.append("Strict mode: Image size mismatch!")
        return CompareResult(1, messages)

    def mismatch(off: int) -> CompareResult:
        messages.append(f"Content mismatch at offset {off}!")
        return CompareResult(1, messages, off)

    cur1 = _StatusCursor(img1, name1)
    cur2 = _StatusCursor(img2, name2)
    offset = 0
    while offset < total:
        st1 = cur1.at(offset, total1)
        st2 = cur2.at(offset, total2)
        chunk = min(st1.length, st2.length)
        if chunk <= 0:
            raise CompareError(f"Sector allocation test failed for {name1}", 3)
        if strict and st1.flags != st2.flags:
            messages.append(f"Strict mode: Offset {offset} block status mismatch!")
            return CompareResult(1, messages, offset)
        if st1.zero and st2.zero:
            pass
        elif st1.allocated == st2.allocated:
            if st1.allocated:
                chunk = min(chunk, IO_BUF_SIZE)
                b1 = _read_or_fail(img1, offset, chunk, name1)
                b2 = _read_or_fail(img2, offset, chunk, name2)
                differ, pnum = _first_difference(b1, b2, 0, chunk)
                if differ or pnum != chunk:
                    return mismatch(offset + (0 if differ else pnum))
        else:
            chunk = min(chunk, IO_BUF_SIZE)
            if st1.allocated:
                buf = _read_or_fail(img1, offset, chunk, name1)
            else:
                buf = _read_or_fail(img2, offset, chunk, name2)
            idx = _first_nonzero_sector(buf)
            if idx >= 0:
                return mismatch(offset + idx)
        offset += chunk
        prog(chunk / progress_base * 100, 100)

    if total1 != total2:
        messages.append("Warning: Image size mismatch!")
        over, over_name, cur = (img1, name1, cur1) if total1 > total2 else \
            (img2, name2, cur2)
        while offset < progress_base:
            st = cur.at(offset, progress_base)
            chunk = st.length
            if chunk <= 0:
                raise CompareError(f"Sector allocation test failed for {over_name}", 3)
            if st.allocated and not st.zero:
                chunk = min(chunk, IO_BUF_SIZE)
                buf = _read_or_fail(over, offset, chunk, over_name)
                idx = _first_nonzero_sector(buf)
                if idx >= 0:
                    return mismatch(offset + idx)
            offset += chunk
            prog(chunk / progress_base * 100, 100)

    messages.append("Images are identical.")
    return CompareResult(0, messages)


# ---------------------------------------------------------------------------------------
# dd
# ---------------------------------------------------------------------------------------
def dd_output_size(input_size: int, *, bs: int = 512, count: int | None = None,
                   skip: int | None = None) -> int:
    """Size of the image ``qemu-img dd`` creates for these operands."""
    size = input_size
    if count is not None and count * bs < size:
        size = count * bs
    if skip is not None and size < bs * skip:
        return 0
    return size - bs * (skip or 0)


def dd(src: Image, dst: Image, *, bs: int = 512, count: int | None = None,
       skip: int | None = None, chunk: int = 4 << 20) -> None:
    """Copy as ``qemu-img dd`` does: ``count`` blocks of ``bs`` bytes from block ``skip``
    of ``src`` to the start of ``dst`` (already created with :func:`dd_output_size`).

    qemu-img writes every block, zeroes included; so does this, in large requests
    (a whole number of ``bs`` blocks each) to keep Python overhead out of the loop.
    """
    size = image_length(src)
    if count is not None and count * bs < size:
        size = count * bs
    if skip is not None and size < bs * skip:
        in_pos = size
    else:
        in_pos = bs * (skip or 0)
    step = max(bs, (chunk // bs) * bs)
    out_pos = 0
    while in_pos < size:
        n = min(step, size - in_pos)
        try:
            data = _read(src, in_pos, n)
        except BlockError as exc:
            raise BlockError(f"error while reading from input image file: {exc}") from exc
        in_pos += n
        try:
            dst.write(out_pos, data)
        except BlockError as exc:
            raise BlockError(f"error while writing to output image file: {exc}") from exc
        out_pos += n


# ---------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class BenchResult:
    """What ``qemu-img bench`` reports."""

    requests: int
    seconds: float


def bench(img: Image, *, count: int = 75000, depth: int = 64, bufsize: int = 4096,
          step: int = 0, offset: int = 0, write: bool = False, pattern: int = 0,
          flush_interval: int = 0, drain_on_flush: bool = True) -> BenchResult:
    """Issue ``count`` reads (or writes of ``pattern`` bytes) of ``bufsize`` bytes,
    ``step`` apart (default ``bufsize``), wrapping at the image end (qemu-img bench).

    Requests run one after another in submission order; ``depth`` only shapes when
    flushes happen, as in qemu-img (a flush every ``flush_interval`` completions).
    """
    if depth <= 0:
        raise BlockError("Invalid queue depth specified")
    size = image_length(img)
    step = step or bufsize
    buf = bytes([pattern]) * bufsize
    pos = offset
    start = time.perf_counter()
    remaining = count
    for _ in range(count):
        if pos + bufsize > size or pos < 0:
            raise BlockError("Failed request: Input/output error")
        try:
            if write:
                img.write(pos, buf)
            else:
                img.read(pos, bufsize)
        except BlockError as exc:
            raise BlockError(f"Failed request: {exc}") from exc
        remaining -= 1
        pos = (pos + step) % size if size else 0
        if flush_interval and remaining % flush_interval == 0:
            try:
                img.flush()
            except BlockError as exc:
                raise BlockError(f"Failed flush request: {exc}") from exc
    return BenchResult(count, time.perf_counter() - start)
