"""Rewrite README's limits table from the extension's traits (their defaults and help).

Run after adding or changing a setting: ``.venv/bin/python scripts/update_readme_limits.py``.
``tests/test_readme.py`` fails while README and the traits disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from jupyter_exec_sessions.extension.app import limits_table

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- limits:begin -->\n).*?(<!-- limits:end -->)", re.S)


def main() -> int:
    """Rewrite the block; 1 when README has none."""
    text = README.read_text()
    new, count = BLOCK.subn(lambda m: m.group(1) + limits_table() + m.group(2), text)
    if count != 1:
        print("README.md has no <!-- limits:begin --> … <!-- limits:end --> block", file=sys.stderr)
        return 1
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
