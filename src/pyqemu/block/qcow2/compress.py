"""Compressed cluster payloads: zlib (raw deflate, window 2^12) and zstd.

As QEMU's qcow2-threads.c: a compressed cluster is one raw deflate stream (wbits -12) or one
zstd frame; the stored length is rounded up to 512-byte sectors, so trailing bytes after the
stream are ignored on decompression.
"""

from __future__ import annotations

import zlib

from pyqemu.block.errors import ImageFormatError
from pyqemu.block.qcow2.format import COMPRESSION_ZLIB, COMPRESSION_ZSTD


def compress(data: bytes, ctype: int) -> bytes:
    """Compressed payload for one cluster of ``data``."""
    if ctype == COMPRESSION_ZLIB:
        c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -12, 9)
        return c.compress(data) + c.flush()
    if ctype == COMPRESSION_ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(write_content_size=False).compress(data)
    raise ImageFormatError(f"Unknown compression type '{ctype}'")


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
