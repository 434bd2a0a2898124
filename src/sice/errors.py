"""Typed exceptions of the sice core.

Core code raises these with the offending path and value in the message; only the command-line
and web layers turn them into one-line messages and exit codes.
"""
from __future__ import annotations

import os


class SiceError(Exception):
    """Base class of every error that sice reports to a user without a traceback."""


class ImageReadError(SiceError):
    """An image file cannot be read: missing, unreadable, truncated, unsupported, too large."""

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageWriteError(SiceError):
    """An output image cannot be written (folder missing or read-only, disk full, would overwrite input)."""

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelError(SiceError):
    """A model name, checkpoint or imported file is unknown, corrupt or of the wrong shape."""


class DatasetError(SiceError):
    """A dataset folder or one of its scenes is unusable."""
