"""The raw format: the image file *is* the disk (QEMU's block/raw-format.c over file-posix).

Sizes are whole 512-byte sectors, as QEMU sees them: a 1000-byte file has a virtual size
of 1024 and reads zeroes past its end. Holes (SEEK_HOLE) report as zero, data as data.

Probing safety (raw-format.c, raw_co_pwritev): when the format was *probed* rather than
given with ``-f raw``, a write that touches the first 512 bytes is refused (EPERM) if the
new first sector would probe as another format, so a guest cannot turn its disk into,
say, a qcow2 header pointing at host files.
"""

from __future__ import annotations

from pyqemu.block.driver import BlockStatus, CreateOpt, Image, OptType
from pyqemu.block.errors import BlockError
from pyqemu.block.file import ImageFile
from pyqemu.block.locking import PERM_ALL, PERM_RESIZE, PERM_WRITE, apply_locks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

__all__ = ["PREALLOC_MODES", "RawImage", "create_file"]

SECTOR = 512
#: QEMU's PreallocMode values
PREALLOC_MODES = ("off", "metadata", "falloc", "full")


def _round_up(n: int, align: int = SECTOR) -> int:
    return (n + align - 1) // align * align


def create_file(filename: str) -> ImageFile:
    """Create (or reuse) ``filename`` for a new image as file-posix does: open without
    truncating, take the "write"+"resize" locks (not sharing resize), then truncate to 0.
    An image in use by another process is therefore never clobbered."""
    file = ImageFile(filename, readonly=False, create=True, truncate=False)
    try:
        apply_locks(file.fd, filename, PERM_WRITE | PERM_RESIZE, PERM_ALL & ~PERM_RESIZE)
        file.truncate(0)
    except BaseException:
        file.close()
        raise
    return file


def _check_prealloc(mode: str, *, allow_metadata: bool = False) -> str:
    if mode not in PREALLOC_MODES:
        raise BlockError(f"invalid parameter value: {mode}")
    if mode == "metadata" and not allow_metadata:
        raise BlockError("Unsupported preallocation mode: metadata")
    return mode


def _grow(file: ImageFile, old: int, new: int, prealloc: str) -> None:
    """Resize ``file`` to ``new`` bytes with preallocation ``prealloc`` (file-posix)."""
    del old
    file.resize(new, prealloc)


class RawImage(Image):
    """A raw image: virtual disk byte N is file byte N."""

    format_name: ClassVar[str] = "raw"
    create_opts: ClassVar[list[CreateOpt]] = [
        CreateOpt("size", OptType.SIZE, "Virtual disk size"),
    ]
    protocol_opts_passthrough: ClassVar[bool] = True
    locks_on_create: ClassVar[bool] = True

    def __init__(self, file: ImageFile, *, readonly: bool, probed: bool = False) -> None:
        super().__init__(file, readonly=readonly)
        #: format guessed, not given: first-sector writes are restricted
        self.probed = probed
        self._size = _round_up(file.size())

    # ---- registry --------------------------------------------------------------------
    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        # the smallest positive score: raw is used only when nothing else matches
        return 1

    @classmethod
    def create(cls, filename: str, size: int, opts: dict[str, Any]) -> None:
        prealloc = _check_prealloc(str(opts.get("preallocation", "off")))
        file = create_file(filename)
        try:
            _grow(file, 0, _round_up(size), prealloc)
        finally:
            file.close()

    @classmethod
    def open(cls, file: ImageFile, *, readonly: bool, options: dict[str, Any]) -> Image:
        return cls(file, readonly=readonly, probed=bool(options.get("probed", False)))

    @classmethod
    def measure(cls, size: int, opts: dict[str, Any], source: Image | None) -> tuple[int, int]:
        """raw needs exactly the virtual size (sparse or not, qemu-img reports it)."""
        size = source.virtual_size if source is not None else _round_up(size)
        return size, size

    # ---- geometry / data -------------------------------------------------------------
    @property
    def virtual_size(self) -> int:
        return self._size

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise BlockError(f"Request out of range: offset {offset} length {length} "
                             f"(image size {self._size})")

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        return self.file.pread(offset, length)

    def _check_probed_write(self, offset: int, data: bytes | memoryview) -> None:
        """Refuse a write that would make a probed raw image probe as another format."""
        if not self.probed or offset >= SECTOR or not len(data):
            return
        from pyqemu.block import probe_header

        head = bytearray(self.file.pread(0, SECTOR))
        end = min(SECTOR, offset + len(data))
        head[offset:end] = bytes(data[: end - offset])
        if probe_header(bytes(head), None) != "raw":
            raise BlockError("Operation not permitted")

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if self.readonly:
            raise BlockError("Permission denied: image is read-only")
        self._check_range(offset, len(data))
        self._check_probed_write(offset, data)
        self.file.pwritev_behind(offset, [data])

    def write_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        if self.readonly:
            raise BlockError("Permission denied: image is read-only")
        self._check_range(offset, length)
        fsize = self.file.size()
        end = min(offset + length, fsize)  # past EOF already reads as zeroes
        if end <= offset:
            return
        if may_unmap and self.file.punch_hole(offset, end - offset):
            return
        super().write_zeroes(offset, end - offset)

    def discard(self, offset: int, length: int) -> None:
        if self.readonly:
            return
        self._check_range(offset, length)
        end = min(offset + length, self.file.size())
        if end > offset:
            self.file.punch_hole(offset, end - offset)

    def block_status(self, offset: int, length: int) -> BlockStatus:
        """Data vs hole from SEEK_DATA/SEEK_HOLE; past EOF (up to the sector-rounded
        size) reads as zeroes. Host offset equals guest offset."""
        length = min(length, self._size - offset)
        fsize = self.file.size()
        if offset >= fsize:
            return BlockStatus(offset, length, allocated=True, data=False, zero=True,
                               host_offset=offset, filename=self.filename)
        is_data, end = self.file.data_extent(offset)
        n = max(1, min(end, offset + length) - offset)
        return BlockStatus(offset, n, allocated=True, data=is_data, zero=not is_data,
                           host_offset=offset, filename=self.filename)

    # ---- management ------------------------------------------------------------------
    def truncate(self, size: int, *, prealloc: str = "off", shrink: bool = False) -> None:
        if self.readonly:
            raise BlockError("Permission denied: image is read-only")
        if prealloc not in PREALLOC_MODES:
            raise BlockError(f"Invalid preallocation mode '{prealloc}'")
        if prealloc == "metadata":
            raise BlockError("Unsupported preallocation mode: metadata")
        if _round_up(size) < self._size and not shrink:
            raise BlockError("Use the --shrink option to perform a shrink operation.")
        # the file gets exactly ``size`` bytes; the disk is seen in whole sectors
        _grow(self.file, self.file.size(), size, prealloc)
        self._size = _round_up(size)
