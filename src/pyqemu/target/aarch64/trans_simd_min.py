"""Formerly a stop-gap subset of Advanced SIMD (copies, MOVI, permutes, FMOV general and
the SIMD loads/stores) for C programs; all of it now lives in :mod:`trans_simd` and
simd.decode with the full tables.

This module is kept, empty, only because ``translate._REQUIRED`` names it (the import
would fail without it). Once ``"trans_simd_min"`` is dropped from
``translate.DECODER_MODULES`` and ``_REQUIRED``, this file can be deleted.
"""

from __future__ import annotations

DECODE_FILES: tuple[str, ...] = ()
