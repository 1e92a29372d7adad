"""pyqemu's block layer: image formats behind one driver interface.

Exceptions (pyqemu.block.errors): BlockError > ImageFormatError, ImageLockError.
Entry points: ``FORMATS`` (name -> Image subclass), ``probe_format``, ``open_image``
(opens a whole backing chain), ``create_image``; see ``pyqemu.block.driver`` for the
interface each format implements.
"""
