"""pyqemu: a machine emulator and virtualizer in Python that speaks QEMU's command lines."""

__version__ = "0.1.0"
#: the QEMU release whose command lines and output formats pyqemu follows
QEMU_COMPAT_VERSION = "7.2.0"
