"""README states the truth about the settings: its limits table is the traits' own."""

from __future__ import annotations

import re
from pathlib import Path

from jupyter_exec_sessions.extension.app import ExecSessionsApp, limits_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_every_setting_with_the_traits_default_and_help() -> None:
    text = README.read_text()
    block = re.search(r"<!-- limits:begin -->\n(.*?)<!-- limits:end -->", text, re.S)
    assert block is not None, "README has no limits block"
    assert block.group(1) == limits_table(), "run scripts/update_readme_limits.py"
    for name in ExecSessionsApp.class_own_traits(config=True):
        assert f"| `{name}` |" in block.group(1)


def test_readme_cites_no_document_outside_the_repository() -> None:
    for path in [README, *README.parent.glob("docs/*.md"), *README.parent.glob("*/README.md")]:
        text = path.read_text()
        assert "DESIGN" not in text and "shared/" not in text, path
