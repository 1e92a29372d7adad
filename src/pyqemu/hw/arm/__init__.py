"""Arm board support: direct kernel boot (boot.py)."""
