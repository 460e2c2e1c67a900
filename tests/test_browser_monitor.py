"""SessionMonitor rendered in JupyterLab, in headless Debian Chromium driven by Playwright.

``jupyter lab`` runs as a subprocess with the extension; a notebook that displays
``SessionMonitor()`` (no arguments: it must discover the server it runs under) is opened and run;
containers are then created from outside and the rendered widget must show them. A screenshot
is kept in ``test-artifacts/``. ``.ci/install-browser.sh`` installs ``/usr/bin/chromium``; when it
is missing this test fails under CI (``CI`` set) and is skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from helpers import ARTIFACTS, ROOT, RunningServer, ServerLauncher

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "monitor",
            "metadata": {},
            "outputs": [],
            "source": "from jupyter_exec_sessions import SessionMonitor\n\n"
            "monitor = SessionMonitor()\nmonitor",
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "busy",
            "metadata": {},
            "outputs": [],
            # Keeps the kernel busy: the monitor must update anyway (its follower is a thread).
            "source": "import time\n\ntime.sleep(90)",
        },
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: run .ci/install-browser.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, launch_server: ServerLauncher
) -> Iterator[RunningServer]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    (root / "monitor.ipynb").write_text(json.dumps(NOTEBOOK))
    # No "official Jupyter news?" toast over the screenshot.
    settings = tmp / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    srv = launch_server(
        tmp=tmp,
        lab=True,
        pool_size=1,
        extra_args=["--LabApp.expose_app_in_browser=True"],
        # the kernel must discover the server by itself
        unset_env=("JUPYTER_EXEC_SESSIONS_URL", "JUPYTER_EXEC_SESSIONS_TOKEN"),
    )
    yield srv
    srv.stop()


def test_jupyterlab_renders_the_monitor_and_it_shows_containers_created_from_outside_live(
    lab: RunningServer,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    console: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 960})
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.goto(f"{lab.url}lab/tree/monitor.ipynb?token={lab.token}&reset")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session",
                timeout=60_000,
            )
            # Not awaited: the command's promise settles only when every cell has finished.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            widget = page.locator(".jes-monitor")
            try:
                expect(widget).to_have_attribute("data-status", "live", timeout=60_000)
            except AssertionError as exc:
                page.screenshot(path=str(ARTIFACTS / "session-monitor-failure.png"))
                raise AssertionError("monitor not live; console:\n" + "\n".join(console)) from exc

            busy_prompt = page.locator(".jp-InputPrompt", has_text="[*]")
            expect(busy_prompt).to_have_count(1, timeout=10_000)  # the kernel is busy sleeping
            with lab.http() as http:
                cid = create_activity(http)
            row = widget.locator(f"tr.jes-row[data-id='{cid}']")
            expect(row).to_contain_text("seen-from-the-browser", timeout=10_000)
            expect(row.locator("td").nth(7)).to_have_text("2", timeout=10_000)  # executions
            expect(row.locator(".jes-reuses")).to_have_text("↻ 1", timeout=10_000)
            expect(row.locator(".jes-age")).not_to_have_text("–")
            reused = widget.locator(".jes-ev-reused")
            expect(reused.first).to_contain_text("REUSED", timeout=10_000)
            expect(widget.locator("tr.jes-row-deleted")).to_have_count(1, timeout=10_000)
            # Ages tick in the browser without any update from the kernel.
            age = row.locator(".jes-idle")
            first = age.inner_text()
            expect(age).not_to_have_text(first, timeout=5_000)

            expect(busy_prompt).to_have_count(1)  # all of that while the kernel stayed busy
            widget.scroll_into_view_if_needed()
            widget.screenshot(path=str(ARTIFACTS / "session-monitor-widget.png"))
            page.screenshot(path=str(ARTIFACTS / "session-monitor-jupyterlab.png"))
            page.evaluate("() => { window.jupyterapp.commands.execute('kernelmenu:interrupt'); }")
        finally:
            browser.close()
    errors = [c for c in console if c.startswith("error") and "jes" in c]
    assert not errors, errors


def create_activity(http: httpx.Client) -> str:
    """Containers and executions a gateway would cause; returns the reused container's id."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = http.post(path, json=body)
        assert r.status_code in (200, 201), r.text
        result: dict[str, Any] = r.json()
        return result

    cid = str(post("containers", {"name": "seen-from-the-browser"})["id"])
    other = str(post("containers", {"name": "second-conversation"})["id"])
    gone = str(post("containers", {"name": "short-lived"})["id"])
    meta = {"session_id": "conversation-1", "turn_id": "turn-1"}
    post(f"containers/{cid}/resolutions", {"origin": "created", "session_id": "conversation-1"})
    post(f"containers/{cid}/executions", {"type": "python", "code": "x = 41", "metadata": meta})
    post(f"containers/{cid}/resolutions", {"origin": "history", "session_id": "conversation-1"})
    meta = {"session_id": "conversation-1", "turn_id": "turn-2"}
    post(f"containers/{cid}/executions", {"type": "python", "code": "x + 1", "metadata": meta})
    post(f"containers/{other}/executions", {"type": "python", "code": "1/0"})
    assert http.delete(f"containers/{gone}").status_code == 200
    return cid


def test_the_browser_install_script_is_idempotent_and_never_downloads_browsers() -> None:
    script = (ROOT / ".ci" / "install-browser.sh").read_text()
    assert "playwright install" not in script.replace("no `playwright install`", "")
    assert "apt-install.sh" in script and "chromium" in script
    installer = (ROOT / ".ci" / "apt-install.sh").read_text()
    assert "apt-get update" in installer and "apt-get install" in installer
    if CHROMIUM.exists():
        out = subprocess.run(
            ["bash", str(ROOT / ".ci" / "install-browser.sh")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "already present" in out.stdout
