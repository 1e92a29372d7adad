"""Random FP operands and FPCR values for the FP/SIMD lock-step tests."""

from __future__ import annotations

import random

from pyqemu.target.aarch64.helpers_fp import FMT


def special(rng: random.Random, esz: int) -> int:
    """A half/single/double bit pattern biased towards the interesting cases."""
    eb, fb = FMT[esz]
    emax = (1 << eb) - 1
    sign = rng.getrandbits(1) << (eb + fb)
    r = rng.random()
    if r < 0.06:
        return sign  # +-0
    if r < 0.12:
        return sign | (emax << fb)  # +-inf
    if r < 0.18:  # qNaN with payload
        return sign | (emax << fb) | (1 << (fb - 1)) | rng.getrandbits(fb - 1)
    if r < 0.24:  # sNaN with a non-zero payload
        return sign | (emax << fb) | (rng.getrandbits(fb - 1) or 1)
    if r < 0.36:  # denormal
        return sign | rng.choice((1, (1 << fb) - 1, rng.getrandbits(fb) or 1))
    if r < 0.42:  # max / min normal
        return sign | rng.choice(((emax - 1) << fb | ((1 << fb) - 1), 1 << fb))
    if r < 0.55:  # short mantissa (exact halves, ties when combined)
        e = rng.randrange(1, emax)
        return sign | (e << fb) | (rng.getrandbits(4) << (fb - 4))
    if r < 0.75:  # near 1.0 (integers and .5 for FRINT/FCVT)
        bias = (1 << (eb - 1)) - 1
        e = bias + rng.randrange(-3, min(fb + 2, 40))
        return sign | (e << fb) | rng.getrandbits(fb)
    return rng.getrandbits(eb + fb + 1)


def random_fpcr(rng: random.Random) -> int:
    """RMode, FZ, DN, AHP, FZ16 at random (each on with some probability)."""
    v = rng.randrange(4) << 22
    if rng.random() < 0.3:
        v |= 1 << 24
    if rng.random() < 0.3:
        v |= 1 << 25
    if rng.random() < 0.2:
        v |= 1 << 26
    if rng.random() < 0.3:
        v |= 1 << 19
    return v


def random_fpsr(rng: random.Random) -> int:
    return rng.choice((0, 0, 0, rng.getrandbits(5) | (rng.getrandbits(1) << 7)))
