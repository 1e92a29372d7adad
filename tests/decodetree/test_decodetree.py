"""decodetree parser + compiler: hand-written tables, and random tables against a naive
bit-string matcher (the definition of decodetree semantics, character by character)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pyqemu.decodetree import DecodeError, Decoder, parse

TABLE = r"""
# fields: multi-part, signed, function
%imm_split   20:s4 8:4            # (sign-extended hi) : lo
%rd          0:5
%scaled      10:6 !function=times4
%param       !function=the_param
&rri         rd rn imm
&empty
@rri         ........ ........ ...... rn:5 ..... &rri imm=%scaled rd=%rd

ADDI         00000001 ........ ...... ..... ..... @rri
SUBI         00000010 ........ ...... ..... ..... @rri
SPLIT        00000011 imm:s4 ---- ---- imm2:4 ........ c=7 p=%param  \
             rd=%imm_split
{
  # overlap: SPECIAL wins, GENERAL otherwise (and when SPECIAL declines)
  SPECIAL    00000100 11111111 ........ ........
  GENERAL    00000100 ........ ........ ........
}
[
  X1         00000101 0....... ........ ........
  X2         00000101 1....... ........ ........ &empty
]
"""


class NS:
    """Handlers recording what they saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.special_ok = True

    def ns(self) -> dict[str, Any]:
        d: dict[str, Any] = {"times4": lambda ctx, x: x * 4, "the_param": lambda ctx: 42}
        for name in ("ADDI", "SUBI", "SPLIT", "GENERAL", "X1", "X2"):
            d[f"trans_{name}"] = self._rec(name)

        def special(ctx: Any, a: Any) -> bool:
            self.seen.append(("SPECIAL", a))
            return self.special_ok

        d["trans_SPECIAL"] = special
        return d

    def _rec(self, name: str) -> Any:
        def h(ctx: Any, a: Any) -> bool:
            self.seen.append((name, a))
            return True
        return h


def test_fields_formats_and_groups() -> None:
    rec = NS()
    dec = Decoder([(parse(TABLE), rec.ns())])
    insn = (0x01 << 24) | (0x2A << 10) | (0x13 << 5) | 0x1F
    assert dec.decode(None, insn)
    name, a = rec.seen[-1]
    assert name == "ADDI" and (a.rd, a.rn, a.imm) == (0x1F, 0x13, 0x2A * 4)
    assert type(a).__name__ == "arg_rri"
    # signed inline field, multi-part signed field, constant, parameter field
    insn = (0x03 << 24) | (0b1010 << 20) | (0b0110 << 8) | (0x9 << 12)
    assert dec.decode(None, insn)
    name, a = rec.seen[-1]
    assert name == "SPLIT"
    assert a.imm == 0b1010 - 16 and a.imm2 == 0b0110 and a.c == 7 and a.p == 42
    assert a.rd == ((0b1010 - 16) << 4) | 0b0110
    # overlap group: first match wins; a declining handler falls through
    assert dec.decode(None, 0x04FF0000) and rec.seen[-1][0] == "SPECIAL"
    rec.special_ok = False
    assert dec.decode(None, 0x04FF0000) and rec.seen[-1][0] == "GENERAL"
    assert dec.decode(None, 0x04FE0000) and rec.seen[-1][0] == "GENERAL"
    assert dec.decode(None, 0x05000000) and rec.seen[-1][0] == "X1"
    assert dec.decode(None, 0x05800000) and rec.seen[-1][0] == "X2"
    assert not dec.decode(None, 0xFF000000)


@pytest.mark.parametrize("bad, msg", [
    ("FOO 0101", "4 bits, expected 32"),
    ("%f 30:4", "out of range"),
    ("FOO " + "0" * 32 + " @nope", "undefined format"),
    ("FOO " + "0" * 32 + " %nope", "undefined field"),
    ("{\nFOO " + "0" * 32, "unterminated"),
    ("}", "unbalanced"),
    ("&a x\nFOO " + "0" * 27 + " y:5 &a", "not in &a"),
    ("FOO " + "0" * 32 + " ^x", "syntax error"),
])
def test_errors(bad: str, msg: str) -> None:
    with pytest.raises(DecodeError, match=msg):
        parse(bad)


def test_missing_handler() -> None:
    with pytest.raises(DecodeError, match="trans_ADDI"):
        Decoder([(parse(TABLE), {"times4": lambda c, x: x, "the_param": lambda c: 0})])


def _naive_match(patterns: list[tuple[str, str]], insn: int) -> str | None:
    bits = format(insn, "032b")
    for name, pat in patterns:
        if all(p in ".-" or p == b for p, b in zip(pat, bits)):
            return name
    return None


@pytest.mark.parametrize("seed", range(20))
def test_random_tables_against_naive_matcher(seed: int) -> None:
    rng = random.Random(seed)
    pats: list[tuple[str, str]] = []
    # a realistic shape: a few fixed major-opcode bits, more fixed bits per pattern
    for i in range(rng.randint(5, 120)):
        s = []
        for bit in range(32):
            p_fixed = 0.9 if bit < 6 else 0.35
            s.append(rng.choice("01") if rng.random() < p_fixed else rng.choice(".-"))
        pats.append((f"P{i}", "".join(s)))
    text = "{\n" + "\n".join(f"{n} {p}" for n, p in pats) + "\n}\n"
    hits: list[str] = []

    def handler(name: str) -> Any:
        def h(ctx: Any, a: Any) -> bool:
            hits.append(name)
            return True
        return h

    ns = {f"trans_{n}": handler(n) for n, _ in pats}
    dec = Decoder([(parse(text), ns)])
    for _ in range(3000):
        # bias the words towards the patterns so most of them match something
        base = rng.choice(pats)[1]
        insn = int("".join(ch if ch in "01" else rng.choice("01") for ch in base), 2)
        if rng.random() < 0.2:
            insn ^= 1 << rng.randrange(32)
        hits.clear()
        got = dec.decode(None, insn)
        want = _naive_match(pats, insn)
        assert (hits[0] if got else None) == want, f"{insn:#010x}"


def test_overlap_outside_group_is_an_error() -> None:
    text = "A 0000 " + "." * 28 + "\nB 00.. " + "." * 28 + "\n"
    with pytest.raises(DecodeError, match="B overlaps A"):
        parse(text)
    parse("{\n" + text + "}\n")  # fine inside an overlap group
    with pytest.raises(DecodeError, match="overlaps"):
        parse("[\n" + text + "]\n")
    # a group is a unit: its members must not overlap a sibling of the group
    with pytest.raises(DecodeError, match="C overlaps B"):
        parse("{\n" + text + "}\nC 0001 " + "." * 28 + "\n")
    parse("{\n" + text + "}\nC 1000 " + "." * 28 + "\n")
