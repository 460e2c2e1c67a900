"""The committed ``01_quickstart`` opened in JupyterLab renders with its saved outputs.

``jupyter lab`` runs as a subprocess with the extension, its root holding a copy of the committed
notebook; headless Debian Chromium (Playwright) opens it **without running it** and must show the
outputs of the committed run. The screenshot is kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ARTIFACTS, ROOT
from test_browser_monitor import CHROMIUM, CHROMIUM_ARGS, require_chromium
from test_notebooks import runner

NOTEBOOK = "01_quickstart.ipynb"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("lab-notebooks")
    root = tmp / "root"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    settings = tmp / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # render every cell (no virtual scrolling), so every saved output is in the page
    tracker = tmp / "config" / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    # a loaded machine may need long for JupyterLab to start: a generous bound
    with runner.launch_server(
        tmp,
        root,
        lab=True,
        extra_args=("--LabApp.expose_app_in_browser=True",),
        ready_timeout=240,
        pool_size=0,
    ) as srv:
        yield srv


@pytest.mark.timeout(400)
def test_jupyterlab_renders_the_committed_quickstart_with_its_outputs(lab: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(f"{lab.url}lab/tree/{NOTEBOOK}?token={lab.token}&reset")
            notebook = page.locator(".jp-NotebookPanel .jp-Notebook")
            expect(notebook).to_be_visible(timeout=60_000)
            outputs = notebook.locator(".jp-OutputArea-output")
            try:
                expect(outputs.first).to_be_visible(timeout=30_000)
                # saved outputs of the committed run, none executed here
                expect(notebook).to_contain_text("summary.json", timeout=10_000)
                expect(notebook).to_contain_text("source=assistant")
                expect(notebook).to_contain_text("status: completed")
                expect(notebook).to_contain_text("step 4 of 4")
                expect(page.locator(".jp-InputPrompt", has_text="[1]")).to_have_count(1)
            except AssertionError:
                page.screenshot(path=str(ARTIFACTS / "notebook-01-quickstart-failure.png"))
                raise
            assert outputs.count() >= 10
            page.screenshot(path=str(ARTIFACTS / "notebook-01-quickstart.png"), full_page=True)
        finally:
            browser.close()
