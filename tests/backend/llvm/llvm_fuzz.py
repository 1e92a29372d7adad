"""Random A64 code under the llvm backend, next to the interpreter (run as a program so a
host crash shows as the process dying): ``python llvm_fuzz.py <streams> <seed>``.

Each stream is 1-12 words: uniformly random words, random encodings of decode patterns
(loads/stores with random bases, branches to random places, system instructions), from
a random register state. Prints one line per llvm/interp disagreement and a final
``done <streams> <mismatches>``.
"""

from __future__ import annotations

import random
import sys

import test_a64_lockstep as a64
from lockstep import DATA_SIZE, LockStep, random_state


def main(n: int, seed: int) -> int:
    ls = LockStep(backends=("interp", "llvm"))
    ls.vcpus["llvm"][0].tier_threshold = 0
    ls.vcpus["llvm"][0].backend.hot = 0  # type: ignore[attr-defined]
    cands = a64._candidates()
    rng = random.Random(seed)
    data = rng.randbytes(DATA_SIZE)
    bad = 0
    for _ in range(n):
        words = []
        for _ in range(rng.randrange(1, 13)):
            if rng.random() < 0.3:
                words.append(rng.getrandbits(32))
            else:
                words.append(a64._make_word(rng.choice(cands), rng))
        st = random_state(rng, data)
        outs = ls.run_pyqemu(words, st)
        if any(o.kind == "exit None" for o in outs.values()):
            continue  # stopped by the harness's 0.5 s timer (a loop, or a slow compile)
        diff = outs["llvm"].diff(outs["interp"])
        if diff:
            bad += 1
            print("mismatch", " ".join(f"{w:08x}" for w in words), "; ".join(diff[:4]))
    print(f"done {n} {bad}")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
