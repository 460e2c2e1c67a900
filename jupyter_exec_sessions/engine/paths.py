"""Validation of user-supplied file names: nothing may escape a container's directory."""

from __future__ import annotations

import posixpath

from ..errors import InvalidRequestError

__all__ = ["safe_relpath"]

_MAX_PATH = 1024


def safe_relpath(name: str, *, param: str = "file") -> str:
    """Return ``name`` as a normalised relative POSIX path inside the container directory.

    Rejects (``InvalidRequestError``) empty names, NUL bytes, absolute paths, backslashes,
    any ``..`` component and over-long names, instead of silently rewriting them.
    """
    if not name or not name.strip():
        raise InvalidRequestError("The file name is empty.", param=param)
    if "\x00" in name:
        raise InvalidRequestError("The file name contains a NUL byte.", param=param)
    if len(name) > _MAX_PATH:
        raise InvalidRequestError(
            f"The file name is longer than {_MAX_PATH} characters.", param=param
        )
    if "\\" in name:
        raise InvalidRequestError(
            f"The file name {name!r} contains a backslash; use '/' between directories.",
            param=param,
        )
    if name.startswith("/"):
        raise InvalidRequestError(
            f"The file name {name!r} is absolute; give a path relative to the container directory.",
            param=param,
        )
    parts = name.split("/")
    if any(p == ".." for p in parts):
        raise InvalidRequestError(
            f"The file name {name!r} would escape the container directory.", param=param
        )
    norm = posixpath.normpath(name)
    if norm in (".", "") or norm.startswith("../"):
        raise InvalidRequestError(f"The file name {name!r} is not a file path.", param=param)
    return norm
