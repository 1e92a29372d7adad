"""The main job (``python -m pyqemu.demo``) runs end to end and is verified by qemu-img."""

from __future__ import annotations

import subprocess
import sys


def test_demo_main_job(qemu_img) -> None:
    proc = subprocess.run([sys.executable, "-m", "pyqemu.demo"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "$ qemu-img check" in proc.stdout
    assert "$ qemu-img compare" in proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Images are identical." in proc.stdout
    assert "all steps agreed with QEMU" in proc.stdout
