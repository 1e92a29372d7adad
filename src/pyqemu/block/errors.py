"""Exceptions of the block layer.

BlockError                 any block-layer failure; the message is what qemu-img prints
 +-- ImageFormatError      an image is corrupt, truncated or uses an unsupported feature
 +-- ImageLockError        another process holds a conflicting lock (suggests -U)
"""

from __future__ import annotations


class BlockError(Exception):
    """A block-layer error; ``str(exc)`` is a one-line message fit for the user."""


class ImageFormatError(BlockError):
    """The image is corrupt, truncated, or uses a feature we refuse to handle."""


class ImageLockError(BlockError):
    """A conflicting lock is held on the image by another process."""
