"""Compressed cluster payloads: zlib (raw deflate, window 2^12) and zstd.

As QEMU's qcow2-threads.c: a compressed cluster is one raw deflate stream (wbits -12) or one
zstd frame (byte for byte the ones QEMU writes, with the same libraries' settings); the stored length is rounded up to 512-byte sectors, so trailing bytes after the
stream are ignored on decompression.
"""

from __future__ import annotations

import zlib

from pyqemu.block.errors import ImageFormatError
from pyqemu.block.qcow2.format import COMPRESSION_ZLIB, COMPRESSION_ZSTD

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


#: what :func:`compress` returns when the payload would not fit (a deflate stream or a
#: zstd frame is never empty): QEMU then stores the cluster uncompressed
NOT_COMPRESSIBLE = b""


def compress(data: bytes, ctype: int, limit: int) -> bytes:
    """Compressed payload for one cluster of ``data``, or NOT_COMPRESSIBLE when it would
    take more than ``limit`` bytes (QEMU passes cluster_size - 1)."""
    if ctype == COMPRESSION_ZLIB:
        c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -12, 9)
        out = c.compress(data) + c.flush()
    elif ctype == COMPRESSION_ZSTD:
        out = _zstd_compress(data, limit)
    else:
        raise ImageFormatError(f"Unknown compression type '{ctype}'")
    return out if len(out) <= limit else NOT_COMPRESSIBLE


def _zstd_compress(data: bytes, limit: int) -> bytes:
    """QEMU's qcow2_zstd_compress: a default ZSTD_CCtx (level 3, no checksum) and one
    ZSTD_compressStream2(ZSTD_e_end) call over the whole cluster into ``limit`` bytes.

    The bytes depend on the libzstd version (1.5.7, which the zstandard module bundles,
    splits blocks where 1.5.4 does not, so clusters over 128 KiB differ), so this calls
    the system's libzstd, the one qemu-img links, when it can be loaded; else the
    zstandard module with the same settings (the same frames for clusters up to 128 KiB,
    one zstd block, when the versions agree on those)."""
    sys_zstd = _libzstd()
    if sys_zstd is None:
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    import ctypes

    lib, buffer = sys_zstd
    dst = ctypes.create_string_buffer(limit)
    out = buffer(ctypes.addressof(dst), limit, 0)
    src = ctypes.c_char_p(data)
    inp = buffer(ctypes.cast(src, ctypes.c_void_p), len(data), 0)
    cctx = lib.ZSTD_createCCtx()
    if not cctx:
        raise MemoryError("ZSTD_createCCtx failed")
    try:
        # (ctypes releases the GIL: convert -c -m N compresses on N threads)
        left = lib.ZSTD_compressStream2(cctx, ctypes.byref(out), ctypes.byref(inp),
                                        _ZSTD_E_END)
    finally:
        lib.ZSTD_freeCCtx(cctx)
    if left:  # output left to flush (it did not fit), or an error code
        if lib.ZSTD_isError(left):
            raise ImageFormatError("zstd compression failed")
        return NOT_COMPRESSIBLE
    return dst.raw[:out.pos]


_ZSTD_E_END = 2  # ZSTD_EndDirective
_LIBZSTD: list[tuple[Any, Any] | None] = []  # loaded once per process


def _libzstd() -> tuple[Any, Any] | None:
    """(the system libzstd through ctypes, its ZSTD_inBuffer/outBuffer structure), or
    None when it cannot be loaded."""
    if not _LIBZSTD:
        import ctypes

        class ZstdBuffer(ctypes.Structure):
            """ZSTD_inBuffer and ZSTD_outBuffer (one layout): pointer, size, pos."""

            _fields_ = (("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t),
                        ("pos", ctypes.c_size_t))

        try:
            lib = ctypes.CDLL("libzstd.so.1")
            lib.ZSTD_createCCtx.restype = ctypes.c_void_p
            lib.ZSTD_freeCCtx.argtypes = (ctypes.c_void_p,)
            lib.ZSTD_compressStream2.argtypes = (
                ctypes.c_void_p, ctypes.POINTER(ZstdBuffer), ctypes.POINTER(ZstdBuffer),
                ctypes.c_int)
            lib.ZSTD_compressStream2.restype = ctypes.c_size_t
            lib.ZSTD_isError.argtypes = (ctypes.c_size_t,)
            lib.ZSTD_isError.restype = ctypes.c_uint
            _LIBZSTD.append((lib, ZstdBuffer))
        except (OSError, AttributeError):
            _LIBZSTD.append(None)
    return _LIBZSTD[0]


def decompress(data: bytes, out_len: int, ctype: int) -> bytes:
    """Decompress one cluster; raises ImageFormatError unless exactly ``out_len`` bytes."""
    try:
        if ctype == COMPRESSION_ZLIB:
            d = zlib.decompressobj(-12)
            out = d.decompress(data, out_len)
        elif ctype == COMPRESSION_ZSTD:
            import io

            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
            parts: list[bytes] = []
            got = 0
            while got < out_len:
                chunk = reader.read(out_len - got)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
            out = b"".join(parts)
        else:
            raise ImageFormatError(f"Unknown compression type '{ctype}'")
    except (zlib.error, ValueError, MemoryError) as exc:
        raise ImageFormatError("Could not decompress cluster: corrupt compressed data") \
            from exc
    except Exception as exc:  # zstandard.ZstdError
        if type(exc).__name__ == "ZstdError":
            raise ImageFormatError("Could not decompress cluster: corrupt compressed data") \
                from exc
        raise
    if len(out) < out_len:
        raise ImageFormatError("Could not decompress cluster: corrupt compressed data")
    return out[:out_len]
