"""pyqemu's command lines, speaking QEMU 7.2's syntax.

* :mod:`pyqemu.cli.qemuopts` — QemuOpts (``key=value,...`` with ``,,`` escapes, implied
  first key, on/off flags, ``help``), shared by every tool.
* :mod:`pyqemu.cli.img` — ``pyqemu-img``: dispatches ``pyqemu-img <cmd>`` to
  ``pyqemu.cli.img_<cmd>.main(args)``; :mod:`pyqemu.cli.img_common` holds the shared
  conventions (GNU getopt_long, one-line errors with QEMU's exit codes, QEMU's JSON
  layout and size formatting, ``-p`` progress, opening images as qemu-img does).
* :mod:`pyqemu.cli.user` — ``pyqemu-<arch>`` (Linux user mode).

Errors: subcommands raise ``CliError``/``UsageError`` (img_common) or the block layer's
``BlockError``; ``run_command`` turns them into ``pyqemu-img: <message>`` on stderr.
"""
