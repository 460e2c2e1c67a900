"""The JupyterLab "Exec sessions" panel, in headless Debian Chromium driven by Playwright.

``jupyter lab`` runs as a subprocess with the extension and its prebuilt labextension (built
by ``pip install``); containers are created from outside (REST and MCP) and the panel must show
them live, their executions timeline must show what MCP ran (session/turn, rich outputs), and
the actions (console on the container's kernel, interrupt, delete, create) must work.
Screenshots (light and dark) are kept in ``test-artifacts/``. ``.ci/install-browser.sh``
installs ``/usr/bin/chromium``; when it is missing these tests fail under CI (``CI`` set) and
are skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any, cast

import httpx2 as httpx
import pytest
from helpers import ARTIFACTS, RunningServer, launch
from test_browser_monitor import CHROMIUM, CHROMIUM_ARGS, require_chromium

from jupyter_exec_sessions.mcp_server import (
    META_CONTAINER_ID,
    META_SESSION_ID,
    META_TURN_ID,
    RESULT_META_CONTAINER_ID,
)

PANEL = "#jupyter-exec-sessions-panel"
CONSOLE: list[str] = []  # the browser's console messages


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """An RGB PNG with a blue-to-orange gradient."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes((40 + 200 * x // width, 120, 230 - 200 * x // width)) for x in range(width)
        )
        for _ in range(height)
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def mcp_call(
    server: RunningServer,
    code: str,
    session_id: str,
    turn_id: str,
    container_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Run code through the MCP endpoint with the official client; (text, the result's _meta).

    Each call is a new MCP session: without ``container_id`` (sent as ``_meta``) it gets a
    container of its own.
    """
    meta = {META_SESSION_ID: session_id, META_TURN_ID: turn_id}
    if container_id is not None:
        meta[META_CONTAINER_ID] = container_id
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp_types import TextContent

    async def go() -> tuple[str, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {server.token}"}
        timeout = httpx.Timeout(30, read=90)
        async with (
            httpx.AsyncClient(headers=headers, timeout=timeout) as h,
            Client(
                streamable_http_client(server.mcp_url, http_client=h), read_timeout_seconds=90
            ) as client,
        ):
            result = await client.call_tool(
                "execute_python_code",
                {"code": code},
                meta=cast(Any, meta),
            )
        text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
        return text, dict(result.meta or {})

    # Playwright's sync API owns this thread's event loop: run the client in its own thread.
    out: list[tuple[str, dict[str, Any]]] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(asyncio.run(go()))
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "MCP call did not finish in 120 s"
    if errors:
        raise errors[0]
    return out[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("labpanel")
    settings = tmp / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    srv = launch(tmp, lab=True, pool_size=1, extra_args=["--LabApp.expose_app_in_browser=True"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(lab: RunningServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    console = CONSOLE
    console.clear()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1440, "height": 900})
            pg.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            pg.goto(f"{lab.url}lab?token={lab.token}&reset")
            pg.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.commands"
                " && window.jupyterapp.commands.hasCommand('exec-sessions:open-panel')",
                timeout=60_000,
            )
            yield pg
        finally:
            browser.close()


def http(lab: RunningServer) -> httpx.Client:
    return lab.http()


def open_panel_from_sidebar(page: Any) -> Any:
    from playwright.sync_api import expect

    tab = page.locator(f".jp-SideBar [data-id='{PANEL[1:]}']")
    expect(tab).to_be_visible(timeout=10_000)
    panel = page.locator(PANEL)
    if not panel.is_visible():
        tab.click()
    expect(panel).to_be_visible(timeout=5_000)
    return panel


def test_the_panel_opens_from_the_sidebar_and_from_the_command_palette(page: Any) -> None:
    from playwright.sync_api import expect

    panel = open_panel_from_sidebar(page)
    expect(panel).to_have_attribute("data-connection", "live", timeout=15_000)
    # close it, then open it again through the command palette
    page.locator(f".jp-SideBar [data-id='{PANEL[1:]}']").click()
    expect(panel).to_be_hidden(timeout=5_000)
    page.keyboard.press("Control+Shift+C")
    search = page.locator(".lm-CommandPalette-input, .jp-mod-commandPalette input").first
    expect(search).to_be_visible(timeout=5_000)
    search.fill("Exec sessions: open panel")
    item = page.locator(".lm-CommandPalette-item", has_text="Exec sessions: open panel")
    expect(item.first).to_be_visible(timeout=5_000)
    page.keyboard.press("Enter")
    expect(panel).to_be_visible(timeout=5_000)


def test_containers_created_via_rest_and_mcp_appear_within_two_seconds(
    page: Any, lab: RunningServer
) -> None:
    from playwright.sync_api import expect

    panel = open_panel_from_sidebar(page)
    expect(panel).to_have_attribute("data-connection", "live", timeout=15_000)
    with http(lab) as h:
        cid = h.post("containers", json={"name": "made-by-rest"}).json()["id"]
    row = panel.locator(f"tr.jes-row[data-id='{cid}']")
    expect(row).to_contain_text("made-by-rest", timeout=2_000)
    expect(row.locator(".jes-col-status")).to_have_text("running")

    _, structured = mcp_call(lab, "seen = 'via-mcp'", "browser-conv", "browser-turn-0")
    mcp_row = panel.locator(f"tr.jes-row[data-id='{structured[RESULT_META_CONTAINER_ID]}']")
    expect(mcp_row).to_be_visible(timeout=2_000)
    expect(mcp_row.locator(".jes-col-executions")).to_have_text("1", timeout=2_000)
    page.screenshot(path=str(ARTIFACTS / "panel-list.png"))


def test_mcp_code_adds_a_timeline_entry_with_its_session_turn_and_rich_outputs(
    page: Any, lab: RunningServer
) -> None:
    from playwright.sync_api import expect

    png = tiny_png()
    code = (
        "import base64\nfrom IPython.display import HTML, Image, display\n"
        f"display(Image(data=base64.b64decode({base64.b64encode(png).decode()!r})))\n"
        'display(HTML(\'<table class="jes-test-table"><tr><th>k</th></tr>'
        "<tr><td>v</td></tr></table>'))\n"
        "answer_from_mcp = 'forty-two'\nprint('ran via mcp')"
    )
    _, structured = mcp_call(lab, code, "timeline-conv", "turn-7")
    cid = structured[RESULT_META_CONTAINER_ID]
    panel = open_panel_from_sidebar(page)
    row = panel.locator(f"tr.jes-row[data-id='{cid}']")
    expect(row).to_be_visible(timeout=5_000)
    row.focus()
    page.keyboard.press("Enter")  # keyboard reachable: Enter opens the detail view
    detail = page.locator(f"#jes-detail-{cid}")
    expect(detail).to_be_visible(timeout=5_000)
    entry = detail.locator(".jes-entry[data-session='timeline-conv'][data-turn='turn-7']")
    try:
        expect(entry).to_have_count(1, timeout=5_000)
    except AssertionError as exc:
        page.screenshot(path=str(ARTIFACTS / "panel-failure.png"))
        raise AssertionError(detail.inner_text()) from exc
    expect(entry).to_have_attribute("data-status", "completed")
    expect(entry.locator(".jes-code")).to_contain_text("answer_from_mcp = 'forty-two'")
    image = entry.locator(".jes-outputs img")
    expect(image).to_be_visible(timeout=5_000)
    assert image.evaluate("img => img.naturalWidth") == 2
    expect(entry.locator(".jes-outputs table td")).to_have_text("v")
    expect(entry.locator(".jes-outputs")).to_contain_text("ran via mcp")
    # a later MCP call of the same conversation lands on top of the timeline, live
    later, _ = mcp_call(lab, "answer_from_mcp.upper()", "timeline-conv", "turn-8", cid)
    assert "FORTY-TWO" in later, later
    first = detail.locator(".jes-entry").first
    expect(first).to_have_attribute("data-turn", "turn-8", timeout=5_000)
    expect(first.locator(".jes-outputs")).to_contain_text("FORTY-TWO")
    # the reuse of the conversation's container is in its history
    detail.screenshot(path=str(ARTIFACTS / "panel-detail.png"))


def test_open_console_attaches_to_the_containers_kernel_with_the_models_variables(
    page: Any, lab: RunningServer
) -> None:
    from playwright.sync_api import expect

    _, structured = mcp_call(lab, "model_var = 6 * 7\nmodel_var", "console-conv", "turn-1")
    cid = structured[RESULT_META_CONTAINER_ID]
    with http(lab) as h:
        kernel_id = h.get(f"containers/{cid}").json()["exec_sessions"]["kernel_id"]
    page.evaluate(
        "id => window.jupyterapp.commands.execute('exec-sessions:open-container', {id})", cid
    )
    detail = page.locator(f"#jes-detail-{cid}")
    expect(detail).to_be_visible(timeout=5_000)
    detail.locator("button.jes-open-console").click()
    page.wait_for_function(
        "kid => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.console && w.sessionContext.session"
        " && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.id === kid"
        " && w.sessionContext.session.kernel.connectionStatus === 'connected'; }",
        arg=kernel_id,
        timeout=30_000,
    )
    console = page.locator(".jp-ConsolePanel:visible").last
    prompt = console.locator(".jp-CodeConsole-input .cm-content")
    prompt.click()
    page.keyboard.type("model_var + 1000")
    page.keyboard.press("Shift+Enter")
    expect(console.locator(".jp-OutputArea-output").last).to_have_text("1042", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "panel-console.png"))
    # the console's own execution never disturbs the container: the model still sees its state
    text, _ = mcp_call(lab, "model_var", "console-conv", "turn-2", cid)
    assert "42" in text
    # close the console without shutting the container's kernel down
    page.evaluate("() => window.jupyterapp.shell.currentWidget.dispose()")
    with http(lab) as h:
        assert h.get(f"containers/{cid}").json()["exec_sessions"]["kernel_id"] == kernel_id


def test_interrupt_stops_a_running_sleep(page: Any, lab: RunningServer) -> None:
    from playwright.sync_api import expect

    with http(lab) as h:
        cid = h.post("containers", json={"name": "sleeper"}).json()["id"]
    answer: dict[str, Any] = {}

    def sleep() -> None:
        with http(lab) as h:
            r = h.post(
                f"containers/{cid}/executions",
                json={"code": "import time\ntime.sleep(60)", "timeout_ms": 120_000},
                timeout=120,
            )
            answer.update(r.json())

    t = threading.Thread(target=sleep)
    t.start()
    try:
        page.evaluate(
            "id => window.jupyterapp.commands.execute('exec-sessions:open-container', {id})", cid
        )
        detail = page.locator(f"#jes-detail-{cid}")
        expect(detail).to_have_attribute("data-busy", "true", timeout=10_000)
        expect(detail.locator(".jes-entry").first).to_have_attribute(
            "data-status", "in_progress", timeout=5_000
        )
        detail.locator("button.jes-interrupt").click()
        expect(detail.locator(".jes-entry").first).to_have_attribute(
            "data-status", "cancelled", timeout=10_000
        )
        expect(detail).to_have_attribute("data-busy", "false", timeout=5_000)
    finally:
        t.join(timeout=90)
    assert answer.get("status") == "cancelled", answer
    assert answer["duration_ms"] < 30_000


def test_create_from_the_panel_and_delete_with_confirmation_removes_the_row(
    page: Any, lab: RunningServer
) -> None:
    from playwright.sync_api import expect

    panel = open_panel_from_sidebar(page)
    panel.locator("button.jes-create").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_be_visible(timeout=5_000)
    dialog.locator("input").fill("made-in-the-panel")
    dialog.locator(".jp-mod-accept").click()
    row = panel.locator("tr.jes-row", has_text="made-in-the-panel")
    expect(row).to_have_count(1, timeout=30_000)  # a cold kernel start when the pool is empty
    cid = row.get_attribute("data-id")
    with http(lab) as h:
        assert h.get(f"containers/{cid}").json()["name"] == "made-in-the-panel"
    row.click()
    detail = page.locator(f"#jes-detail-{cid}")
    expect(detail).to_be_visible(timeout=5_000)
    detail.locator("button.jes-delete").click()
    confirm = page.locator(".jp-Dialog")
    expect(confirm).to_contain_text("Delete", timeout=5_000)
    confirm.locator(".jp-mod-warn").click()
    expect(panel.locator(f"tr.jes-row[data-id='{cid}']")).to_have_count(0, timeout=5_000)
    expect(detail).to_have_count(0)
    with http(lab) as h:
        assert h.get(f"containers/{cid}").status_code == 404
    # the filter finds deleted containers again
    panel.locator(".jes-status-filter").select_option("deleted")
    expect(panel.locator(f"tr.jes-row[data-id='{cid}']")).to_have_count(1, timeout=5_000)
    panel.locator(".jes-status-filter").select_option("live")


def test_screenshots_in_light_and_dark_themes_and_the_reconnecting_state(
    page: Any, lab: RunningServer
) -> None:
    from playwright.sync_api import expect

    code = (
        "import base64\nfrom IPython.display import HTML, Image, display\n"
        f"display(Image(data=base64.b64decode({base64.b64encode(tiny_png(160, 40)).decode()!r})))\n"
        "rows = [('alpha', 3), ('beta', 5)]\n"
        "open('rows.csv', 'w').write(''.join(f'{k},{v}\\n' for k, v in rows))\n"
        "display(HTML('<table><tr><th>name</th><th>n</th></tr>'"
        " + ''.join(f'<tr><td>{k}</td><td>{v}</td></tr>' for k, v in rows) + '</table>'))\n"
        "print('total', sum(v for _, v in rows))"
    )
    _, structured = mcp_call(lab, code, "demo-conversation", "turn-1")
    cid = structured[RESULT_META_CONTAINER_ID]
    with http(lab) as h:
        for origin in ("created", "history"):
            r = h.post(
                f"containers/{cid}/resolutions",
                json={"origin": origin, "session_id": "demo-conversation"},
            )
            assert r.status_code == 200, r.text
    mcp_call(lab, "rows.append(('gamma', 8))\nlen(rows)", "demo-conversation", "turn-2", cid)
    panel = open_panel_from_sidebar(page)
    expect(panel.locator(f"tr.jes-row[data-id='{cid}']")).to_have_class(
        "jes-row jes-reused", timeout=5_000
    )
    # a wider sidebar, as a user would drag it
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 480, box["y"] + 200, steps=5)
    page.mouse.up()
    page.evaluate(
        "id => window.jupyterapp.commands.execute('exec-sessions:open-container', {id})", cid
    )
    detail = page.locator(f"#jes-detail-{cid}")
    expect(detail.locator(".jes-entry")).to_have_count(2, timeout=5_000)
    expect(detail.locator(".jes-resolution-reused")).to_have_count(1, timeout=5_000)
    download_button = detail.locator(".jes-file .jes-download", has_text="rows.csv")
    expect(download_button).to_be_visible(timeout=5_000)
    with page.expect_download(timeout=10_000) as download:
        download_button.click()
    assert download.value.suggested_filename == "rows.csv"
    assert download.value.path().read_text() == "alpha,3\nbeta,5\n"
    detail.evaluate("el => { el.scrollTop = 0; }")
    for theme, light, name in (
        ("JupyterLab Light", "true", "panel-light.png"),
        ("JupyterLab Dark", "false", "panel-dark.png"),
    ):
        page.evaluate(
            "t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme
        )
        page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'")
        # the panel itself follows the theme (JupyterLab CSS variables)
        page.wait_for_function(
            "([sel, light]) => (getComputedStyle(document.querySelector(sel)).backgroundColor"
            " === 'rgb(255, 255, 255)') === light",
            arg=[PANEL, light == "true"],
            timeout=10_000,
        )
        page.screenshot(path=str(ARTIFACTS / name))
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme',"
        " {theme: 'JupyterLab Light'})"
    )
    # the server goes away: the panel says it is reconnecting
    lab.stop()
    expect(panel).to_have_attribute("data-connection", "reconnecting", timeout=15_000)
    expect(panel.locator(".jes-message")).to_contain_text("reconnecting")
    errors = [m for m in CONSOLE if m.startswith("error") and ("jes" in m or "exec-sessions" in m)]
    assert not errors, errors
