"""Timers: arm_generic_timer.py (the ARM generic timer of each AArch64 CPU)."""
