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

from pyqemu.qjson import quote as _quote

__all__ = ["JSONError", "JSONStreamer", "dump", "parse_tokens"]

#: QEMU's limits (json-streamer.c): a message bigger than this, or nested deeper, is an
#: error and the streamer starts over
MAX_TOKEN_SIZE = 64 << 20
MAX_NESTING = 1024


class JSONError(ValueError):
    """A JSON message QEMU's parser would refuse; ``str()`` is QEMU's description."""


_KEYWORD = re.compile(rb"[a-z]+")
_WS = b" \t\r\n"

Token = tuple[str, Any]  # (kind, value): kind in "{", "}", "[", "]", ":", ",", "str",
# "int", "float", "kw", "err"


class JSONStreamer:
    """Feed bytes; get back complete top-level JSON values (or JSONError per bad one).

    A value is complete when its braces and brackets balance (QEMU's json-streamer). A
    lexical error ends the message being collected with "stray '<text>'" (the text up to
    and including the offending byte) and puts the lexer in QEMU's recovery state:
    input is skipped up to a structural character, a control character or a byte
    0xFE/0xFF, where lexing starts again.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._tokens: list[Token] = []
        self._depth = 0
        self._size = 0
        self._recovery = False

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
                self._recovery = True
                # a C string in QEMU: the text ends at a NUL byte
                text = bytes(tok[1]).split(b"\0", 1)[0].decode("utf-8", "replace")
                yield JSONError(f"JSON parse error, stray '{text}'")
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
            if self._depth > MAX_NESTING:
                self._reset()
                yield JSONError("JSON nesting depth limit exceeded")
                continue
            if self._size > MAX_TOKEN_SIZE:
                self._reset()
                yield JSONError("JSON token size limit exceeded")
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
        if self._recovery:
            while i < len(buf) and (0x20 <= buf[i] <= 0xFD or buf[i] == 9) and \
                    buf[i] not in b"[]{}:,":
                i += 1
            if i == len(buf):
                del buf[:]
                return None
            self._recovery = False
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
            n = _scan_string(buf)
            if n is None:
                return None
            if n < 0:  # lexical error inside the string
                text = bytes(buf[:-n])
                del buf[:-n]
                return ("err", text)
            raw = bytes(buf[:n])
            del buf[:n]
            self._size += n
            return ("str", _decode_string(raw))
        if c == ord("-") or 0x30 <= c <= 0x39:
            end = _scan_number(buf)
            if end is None:
                return None  # the number may continue in the next read
            if end < 0:
                text = bytes(buf[:-end])
                del buf[:-end]
                return ("err", text)
            text = bytes(buf[:end])
            del buf[:end]
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
        return ("err", bytes([c]))


def _scan_number(buf: bytearray) -> int | None:
    """Length of the JSON number at the start of ``buf``; None if the buffer ends where
    the number could go on; ``-n`` for a lexical error whose text is ``buf[:n]`` (the
    offending byte included), as QEMU's lexer: "01", "-}", "1.}", "1e}"."""
    n = len(buf)

    def digits(j: int) -> int:
        while j < n and 0x30 <= buf[j] <= 0x39:
            j += 1
        return j

    i = 0
    if buf[0] == ord("-"):
        i = 1
        if i >= n:
            return None
        if not 0x30 <= buf[i] <= 0x39:
            return -(i + 1)
    if buf[i] == ord("0"):
        i += 1
        if i >= n:
            return None
        if 0x30 <= buf[i] <= 0x39:
            return -(i + 1)
    else:
        i = digits(i)
    if i >= n:
        return None
    if buf[i] == ord("."):
        j = digits(i + 1)
        if j >= n:
            return None
        if j == i + 1:
            return -(j + 1)
        i = j
    if buf[i] in b"eE":
        j = i + 1
        if j >= n:
            return None
        if buf[j] in b"+-":
            j += 1
            if j >= n:
                return None
        k = digits(j)
        if k >= n:
            return None
        if k == j:
            return -(k + 1)
        i = k
    return i


def _scan_string(buf: bytearray) -> int | None:
    """Length of the quoted string at the start of ``buf`` (quotes included); None if it
    has not ended yet; ``-n`` for a lexical error (a control character or byte 0xFE/0xFF
    at ``n - 1``)."""
    quote = buf[0]
    i = 1
    while True:
        if i >= len(buf):
            return None
        c = buf[i]
        if c == quote:
            return i + 1
        if c == ord("\\"):
            if i + 1 >= len(buf):
                return None
            e = buf[i + 1]
            if e < 0x20 or e >= 0xFE:
                return -(i + 2)
            i += 2
            continue
        if c < 0x20 or c >= 0xFE:
            return -(i + 1)
        i += 1


_ESCAPES = {"\"": "\"", "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t"}


def _bad_unicode(s: str, i: int) -> JSONError:
    return JSONError(f"JSON parse error, \\u{s[i:i + 4]} is not a valid Unicode character")


def _decode_string(raw: bytes) -> str | JSONError:
    """The value of a lexed string token (QEMU's parse_string), or the JSONError the
    parser reports when the string is used."""
    try:
        s = raw[1:-1].decode("utf-8")
    except UnicodeDecodeError:
        return JSONError("JSON parse error, invalid UTF-8 sequence in string")
    # error messages quote the 4 characters after \u, the closing quote included
    s_q = s + chr(raw[-1])
    out: list[str] = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        e = s[i + 1]
        i += 2
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            continue
        if e != "u":
            return JSONError("JSON parse error, invalid escape sequence in string")
        hexd = s[i:i + 4]
        if len(hexd) < 4 or any(h not in "0123456789abcdefABCDEF" for h in hexd):
            return _bad_unicode(s_q, i)
        cp = int(hexd, 16)
        if 0xD800 <= cp < 0xDC00:  # a high surrogate needs its low half next
            lo = s[i + 6:i + 10] if s[i + 4:i + 6] == "\\u" else ""
            if len(lo) == 4 and all(h in "0123456789abcdefABCDEF" for h in lo) and \
                    0xDC00 <= int(lo, 16) < 0xE000:
                cp = 0x10000 + ((cp - 0xD800) << 10) + (int(lo, 16) - 0xDC00)
                i += 6
            else:
                return _bad_unicode(s_q, i)
        elif 0xDC00 <= cp < 0xE000:
            return _bad_unicode(s_q, i)
        out.append(chr(cp))
        i += 4
    return "".join(out)


def parse_tokens(tokens: list[Token]) -> Any:
    """The value of one balanced token list (QEMU's json-parser), or raise JSONError.

    Iterative (an explicit stack), so nesting as deep as QEMU allows cannot exhaust
    Python's recursion limit."""
    # stack of open containers: [container, pending key (dicts), state]
    # state: "first" (just opened), "value" (expects a value), "sep" (after a value)
    stack: list[list[Any]] = []
    pos = 0
    result: Any = None
    have_result = False

    def expecting() -> JSONError:
        return JSONError("JSON parse error, expecting value")

    while True:
        if have_result:
            if not stack:
                if pos != len(tokens):
                    raise expecting()
                return result
            top = stack[-1]
            if isinstance(top[0], dict):
                if top[1] in top[0]:
                    raise JSONError("JSON parse error, duplicate key")
                top[0][top[1]] = result
            else:
                top[0].append(result)
            top[2] = "sep"
            have_result = False
        if stack and stack[-1][2] in ("first", "sep", "key"):
            top = stack[-1]
            is_dict = isinstance(top[0], dict)
            if pos >= len(tokens):
                raise expecting()
            kind, v = tokens[pos]
            if top[2] == "sep":
                pos += 1
                if kind == ("}" if is_dict else "]"):
                    result = stack.pop()[0]
                    have_result = True
                    continue
                if kind != ",":
                    raise JSONError("JSON parse error, expected separator in "
                                    + ("dict" if is_dict else "list"))
                top[2] = "key" if is_dict else "value"
                continue
            if top[2] == "first" and kind == ("}" if is_dict else "]"):
                pos += 1
                result = stack.pop()[0]
                have_result = True
                continue
            if is_dict:
                if kind != "str":
                    if kind in ("}", ",", ":"):
                        raise expecting()
                    raise JSONError("JSON parse error, key is not a string in object")
                if isinstance(v, JSONError):
                    raise v
                pos += 1
                if pos >= len(tokens) or tokens[pos][0] != ":":
                    raise JSONError("JSON parse error, missing : in object pair")
                pos += 1
                top[1] = v
            top[2] = "value"
        # a value starts here
        if pos >= len(tokens):
            raise expecting()
        kind, v = tokens[pos]
        pos += 1
        if kind == "{":
            stack.append([{}, None, "first"])
            continue
        if kind == "[":
            stack.append([[], None, "first"])
            continue
        if kind == "str":
            if isinstance(v, JSONError):
                raise v
            result = v
        elif kind in ("int", "float"):
            result = v
        elif kind == "kw":
            if v not in ("true", "false", "null"):
                raise JSONError(f"JSON parse error, invalid keyword '{v}'")
            result = {"true": True, "false": False, "null": None}[v]
        else:
            raise expecting()
        have_result = True


def _float(v: float) -> str:
    # QEMU prints what printf's %.17g gives, "inf" included (not valid JSON, but QEMU's)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.17g}"


def dump(obj: Any, pretty: bool = False) -> str:
    """``obj`` as QEMU writes it: ``{"a": 1, "b": [2]}``, or indented by 4 (pretty).
    Iterative, so any nesting the parser accepted can be written back."""
    out: list[str] = []
    # work items: ("v", value, indent) to write a value, ("s", text) to emit text
    work: list[tuple[Any, ...]] = [("v", obj, 0)]
    while work:
        item = work.pop()
        if item[0] == "s":
            out.append(item[1])
            continue
        _, v, ind = item
        if v is None:
            out.append("null")
        elif v is True:
            out.append("true")
        elif v is False:
            out.append("false")
        elif isinstance(v, int):
            out.append(str(v))
        elif isinstance(v, float):
            out.append(_float(v))
        elif isinstance(v, str):
            out.append(_quote(v))
        elif isinstance(v, (dict, list, tuple)):
            is_dict = isinstance(v, dict)
            op, cl = ("{", "}") if is_dict else ("[", "]")
            pad, endpad = " " * (4 * (ind + 1)), " " * (4 * ind)
            if not v:
                # QEMU's pretty writer still breaks the line inside an empty container
                out.append(f"{op}\n{endpad}{cl}" if pretty else op + cl)
                continue
            items = list(v.items()) if isinstance(v, dict) else [(None, x) for x in v]
            seq: list[tuple[Any, ...]] = [("s", op + ("\n" if pretty else ""))]
            for i, (k, x) in enumerate(items):
                lead = ("" if i == 0 else (",\n" if pretty else ", ")) + \
                    (pad if pretty else "")
                if is_dict:
                    lead += _quote(str(k)) + ": "
                seq.append(("s", lead))
                seq.append(("v", x, ind + 1))
            seq.append(("s", (f"\n{endpad}" if pretty else "") + cl))
            work.extend(reversed(seq))
        else:
            raise TypeError(f"cannot write {type(v).__name__} as JSON")
    return "".join(out)
