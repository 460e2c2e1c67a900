r"""Checks of decoded JSON that the JSON parser does not make: depth and Unicode text.

``json.loads`` accepts ``"\\ud800"`` (a lone surrogate, which is not text and cannot be
encoded as UTF-8 for the kernel) and nesting up to the interpreter's recursion limit. Both
are answered as a 400 naming the field instead of failing later.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_JSON_DEPTH", "json_problem"]

#: Deepest nesting of objects and arrays accepted in a request body.
MAX_JSON_DEPTH = 64


def _text_problem(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str | None] | None:
    """``(message, param)`` for the first problem in ``value``, or ``None`` when it is fine.

    Walks iteratively (no recursion, so no recursion limit): nesting deeper than
    ``max_depth``, or a string or key with a lone surrogate. ``param`` is the dotted path of the
    field (``commands.0``), ``None`` for the body itself.
    """
    stack: list[tuple[Any, tuple[str, ...], int]] = [(value, (), 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            if _text_problem(node):
                param = ".".join(path) or None
                return (
                    f"Invalid value for '{param}': the string contains a lone surrogate"
                    " (not valid Unicode text).",
                    param,
                )
            continue
        if isinstance(node, (dict, list)):
            if depth >= max_depth:
                param = ".".join(path) or None
                return (
                    f"The request body is nested too deeply (more than {max_depth} levels).",
                    param,
                )
            if isinstance(node, dict):
                for key, item in node.items():
                    sub = (*path, str(key))
                    if _text_problem(key):
                        return (
                            "A key in the request body contains a lone surrogate"
                            " (not valid Unicode text).",
                            ".".join(path) or None,
                        )
                    stack.append((item, sub, depth + 1))
            else:
                for i, item in enumerate(node):
                    stack.append((item, (*path, str(i)), depth + 1))
    return None
