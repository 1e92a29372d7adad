"""QEMU's JSON string quoting (qobject/qjson.c), shared by pyqemu-img's --output=json and QMP."""

from __future__ import annotations

__all__ = ["quote"]

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}


def quote(text: str) -> str:
    """``text`` as QEMU writes a JSON string: the short escapes, printable ASCII as is,
    everything else as ``\\uXXXX`` (upper-case hex, surrogate pairs above the BMP)."""
    out = ['"']
    for ch in text:
        cp = ord(ch)
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif 0x20 <= cp < 0x7F:
            out.append(ch)
        elif cp > 0xFFFF:
            cp -= 0x10000
            out.append(f"\\u{0xD800 | (cp >> 10):04X}\\u{0xDC00 | (cp & 0x3FF):04X}")
        else:
            out.append(f"\\u{cp:04X}")
    out.append('"')
    return "".join(out)
