"""The command line shared by the atheris fuzz targets in fuzz/.

``python fuzz/fuzz_<fmt>.py [libFuzzer options] [CORPUS|FILE...]`` fuzzes with atheris
when it is installed; without it, each FILE argument is run through the target once
(handy to replay a crash)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

__all__ = ["fuzz_main"]


def fuzz_main(test_one_input: Callable[[bytes], None],
              argv: Sequence[str] | None = None) -> None:
    """Run ``test_one_input`` under atheris, or once per file argument without it."""
    args = list(sys.argv if argv is None else argv)
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        for path in args[1:]:
            if path.startswith("-"):
                continue  # a libFuzzer option
            with open(path, "rb") as f:
                test_one_input(f.read())
            print(f"ok {path}")
        return
    atheris.instrument_all()
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
