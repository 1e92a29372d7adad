"""AArch64 specifics of Linux user mode: syscall numbers and table, the signal frame."""
