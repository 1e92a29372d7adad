"""QMP's JSON: a streaming parser and a writer with QEMU 7.2's behaviour.

QEMU does not read QMP line by line: its lexer (qobject/json-lexer.c) cuts the byte
stream into tokens and its streamer hands a message to the parser whenever the braces and
brackets balance again, so several objects may share a line and one object may span
lines. Single-quoted strings are accepted (a QEMU extension). Errors are reported with
QEMU's texts ("JSON parse error, invalid keyword 'tru'", "... stray '@'").

The writer escapes as QEMU's json-writer: control characters and everything outside ASCII
as ``\\uXXXX`` (upper-case hex, surrogate pairs above the BMP); floats as ``%.17g``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["JSONError", "JSONStreamer", "dump", "parse_tokens"]

#: QEMU's limits (json-streamer.c): a message bigger than this, or nested deeper, is an
#: error and the streamer starts over
MAX_TOKEN_SIZE = 64 << 20
MAX_NESTING = 1024


class JSONError(ValueError):
    """A JSON message QEMU's parser would refuse; ``str()`` is QEMU's description."""


_KEYWORD = re.compile(rb"[a-z]+")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WS = b" \t\r\n"

Token = tuple[str, Any]  # (kind, value): kind in "{", "}", "[", "]", ":", ",", "str",
# "int", "float", "kw", "err"


class JSONStreamer:
    """Feed bytes; get back complete top-level JSON values (or JSONError per bad one).

    A value is complete when its braces and brackets balance (QEMU's json-streamer); a
    stray character becomes an error message of its own, and the streamer resynchronises.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._tokens: list[Token] = []
        self._depth = 0
        self._size = 0

    def feed(self, data: bytes) -> Iterator[Any | JSONError]:
        """Parsed values (or JSONError instances) completed by ``data``."""
        self._buf += data
        while True:
            tok = self._next_token()
            if tok is None:
                return
            kind = tok[0]
            if kind == "err":
                self._reset()
                yield JSONError(f"JSON parse error, stray '{tok[1]}'")
                continue
            self._tokens.append(tok)
            if kind in "{[":
                self._depth += 1
            elif kind in "}]":
                self._depth -= 1
            if self._depth < 0:
                self._reset()
                yield JSONError("JSON parse error, expecting value")
                continue
            if self._depth > MAX_NESTING or self._size > MAX_TOKEN_SIZE:
                self._reset()
                yield JSONError("JSON parse error, too large nesting" if
                                self._depth > MAX_NESTING else "JSON token size limit exceeded")
                continue
            if self._depth == 0:
                toks, self._tokens = self._tokens, []
                self._size = 0
                try:
                    yield parse_tokens(toks)
                except JSONError as e:
                    yield e

    def _reset(self) -> None:
        self._tokens = []
        self._depth = 0
        self._size = 0

    def _next_token(self) -> Token | None:
        """One token from the buffer, or None if it needs more bytes."""
        buf = self._buf
        i = 0
        while i < len(buf) and buf[i] in _WS:
            i += 1
        del buf[:i]
        if not buf:
            return None
        c = buf[0]
        if c in b"{}[]:,":
            del buf[:1]
            self._size += 1
            return (chr(c), None)
        if c in b"\"'":
            r = _scan_string(buf)
            if r is None:
                return None
            value, n = r
            del buf[:n]
            self._size += n
            return ("str", value)
        if c == ord("-") or 0x30 <= c <= 0x39:
            m = _NUMBER.match(buf)
            # a number at the very end of the buffer may continue in the next read
            if m is None or m.end() == len(buf):
                if len(buf) < 64:
                    return None
                del buf[:1]
                return ("err", chr(c))
            text = bytes(buf[:m.end()])
            del buf[:m.end()]
            self._size += len(text)
            if re.fullmatch(rb"-?[0-9]+", text):
                v = int(text)
                if -(1 << 63) <= v < (1 << 64):
                    return ("int", v)
            return ("float", float(text))
        if 0x61 <= c <= 0x7A:
            m = _KEYWORD.match(buf)
            assert m is not None
            if m.end() == len(buf):
                return None
            word = bytes(buf[:m.end()]).decode()
            del buf[:m.end()]
            self._size += len(word)
            return ("kw", word)
        del buf[:1]
        ch = chr(c) if c < 0x80 else f"\\x{c:02x}"
        return ("err", ch)


_ESCAPES = {ord('"'): '"', ord("'"): "'", ord("\\"): "\\", ord("/"): "/", ord("b"): "\b",
            ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t"}


def _scan_string(buf: bytearray) -> tuple[str | JSONError, int] | None:
    """Decode a quoted string at the start of ``buf``: (value, bytes used) or None if
    the closing quote has not arrived yet."""
    quote = buf[0]
    out: list[str] = []
    raw = bytearray()
    i = 1
    err: JSONError | None = None
    while True:
        if i >= len(buf):
            return None
        c = buf[i]
        if c == quote:
            i += 1
            break
        if c == ord("\\"):
            if i + 1 >= len(buf):
                return None
            e = buf[i + 1]
            if e in _ESCAPES:
                if raw:
                    out.append(raw.decode("utf-8", "replace"))
                    raw = bytearray()
                out.append(_ESCAPES[e])
                i += 2
                continue
            if e == ord("u"):
                if i + 6 > len(buf):
                    return None
                hexd = bytes(buf[i + 2:i + 6])
                try:
                    cp = int(hexd, 16)
                except ValueError:
                    err = err or JSONError("JSON parse error, invalid hex escape")
                    i += 2
                    continue
                if raw:
                    out.append(raw.decode("utf-8", "replace"))
                    raw = bytearray()
                out.append(chr(cp))
                i += 6
                continue
            err = err or JSONError("JSON parse error, invalid escape sequence in string")
            i += 2
            continue
        if c < 0x20:
            err = err or JSONError("JSON parse error, control character in string")
        raw.append(c)
        i += 1
    if raw:
        out.append(raw.decode("utf-8", "replace"))
    text = "".join(out)
    # pair up UTF-16 surrogates written as two \u escapes
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return (err if err is not None else text), i


def parse_tokens(tokens: list[Token]) -> Any:
    """The value of one balanced token list (QEMU's json-parser), or raise JSONError."""
    pos = 0

    def value() -> Any:
        nonlocal pos
        if pos >= len(tokens):
            raise JSONError("JSON parse error, expecting value")
        kind, v = tokens[pos]
        pos += 1
        if kind == "{":
            obj: dict[str, Any] = {}
            if pos < len(tokens) and tokens[pos][0] == "}":
                pos += 1
                return obj
            while True:
                if pos >= len(tokens):
                    raise JSONError("JSON parse error, expecting value")
                k = tokens[pos]
                if k[0] != "str":
                    if k[0] in ("}", ",", ":"):
                        raise JSONError("JSON parse error, expecting value")
                    raise JSONError("JSON parse error, key is not a string in object")
                if isinstance(k[1], JSONError):
                    raise k[1]
                pos += 1
                if pos >= len(tokens) or tokens[pos][0] != ":":
                    raise JSONError("JSON parse error, missing : in object pair")
                pos += 1
                obj[k[1]] = value()
                if pos >= len(tokens):
                    raise JSONError("JSON parse error, expecting value")
                sep = tokens[pos][0]
                pos += 1
                if sep == "}":
                    return obj
                if sep != ",":
                    raise JSONError("JSON parse error, expected separator in dict")
        if kind == "[":
            arr: list[Any] = []
            if pos < len(tokens) and tokens[pos][0] == "]":
                pos += 1
                return arr
            while True:
                arr.append(value())
                if pos >= len(tokens):
                    raise JSONError("JSON parse error, expecting value")
                sep = tokens[pos][0]
                pos += 1
                if sep == "]":
                    return arr
                if sep != ",":
                    raise JSONError("JSON parse error, expected separator in list")
        if kind == "str":
            if isinstance(v, JSONError):
                raise v
            return v
        if kind in ("int", "float"):
            return v
        if kind == "kw":
            if v == "true":
                return True
            if v == "false":
                return False
            if v == "null":
                return None
            raise JSONError(f"JSON parse error, invalid keyword '{v}'")
        raise JSONError("JSON parse error, expecting value")

    result = value()
    if pos != len(tokens):
        raise JSONError("JSON parse error, expecting value")
    return result


def _quote(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o > 0xFFFF:
            o -= 0x10000
            out.append(f"\\u{0xD800 | (o >> 10):04X}\\u{0xDC00 | (o & 0x3FF):04X}")
        else:
            out.append(f"\\u{o:04X}")
    out.append('"')
    return "".join(out)


def _float(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return "null"
    return f"{v:.17g}"


def dump(obj: Any, pretty: bool = False, _indent: int = 0) -> str:
    """``obj`` as QEMU writes it: ``{"a": 1, "b": [2]}``, or indented by 4 (pretty)."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return _float(obj)
    if isinstance(obj, str):
        return _quote(obj)
    if isinstance(obj, dict):
        if not obj:
            # QEMU's pretty writer still breaks the line inside an empty container
            return "{\n" + " " * (4 * _indent) + "}" if pretty else "{}"
        if pretty:
            pad = " " * (4 * (_indent + 1))
            items = [f"{pad}{_quote(str(k))}: {dump(v, True, _indent + 1)}"
                     for k, v in obj.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * (4 * _indent) + "}"
        return "{" + ", ".join(f"{_quote(str(k))}: {dump(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[\n" + " " * (4 * _indent) + "]" if pretty else "[]"
        if pretty:
            pad = " " * (4 * (_indent + 1))
            items = [pad + dump(v, True, _indent + 1) for v in obj]
            return "[\n" + ",\n".join(items) + "\n" + " " * (4 * _indent) + "]"
        return "[" + ", ".join(dump(v) for v in obj) + "]"
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
