"""GPIO controllers (PL061) and GPIO-driven keys."""
