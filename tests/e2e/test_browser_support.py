"""The browser-test support itself (tests/support/browser.py), on tiny pages served by a real HTTP server on
127.0.0.1: filling by label, clicking by text, flash messages, axe-core, screenshots, clean state between tests."""

from __future__ import annotations

import html
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.browser import WINDOW, Browser

_HEAD = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head><body><main>'
_TAIL = "</main></body></html>"

PAGES = {
    "/good": """<h1>New review</h1>
<form action="/saved" method="get">
  <p><label for="title">Title <span aria-hidden="true">*</span></label>
     <input id="title" name="title" required></p>
  <p><label>Severity <select name="severity"><option>low</option><option>high</option></select></label></p>
  <p><label for="due">Due date</label> <input id="due" name="due" type="date"></p>
  <p><input id="restricted" name="restricted" type="checkbox" value="yes">
     <label for="restricted">Restricted</label></p>
  <p><button type="submit">Save</button> <a href="/bad">Cancel</a></p>
</form>""",
    "/bad": """<h1>Broken page</h1>
<img src="/nothing.png" width="20" height="20">
<form><input name="unlabelled"></form>""",
    "/cookie": "<h1>Cookie</h1><script>document.cookie = 'session=abc; path=/'; localStorage.x = '1';</script>",
}


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/saved":
            fields = {key: values[0] for key, values in parse_qs(url.query).items()}
            shown = ", ".join(f"{key}={value}" for key, value in sorted(fields.items()))
            body = f'<h1>Saved</h1><p data-flash role="status">Saved {html.escape(shown)}</p>'
        elif url.path in PAGES:
            body = PAGES[url.path]
        else:
            self.send_error(404)
            return
        page = (_HEAD.format(title=url.path.strip("/")) + body + _TAIL).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser_base_url(site: str) -> str:
    return site


def test_fill_by_label_click_by_text_and_read_the_flash(browser: Browser, site: str) -> None:
    browser.open("/good")
    browser.fill("Title", "Cloud exit")  # the label reads "Title *": the one label starting with it
    browser.fill("Severity", "high")  # a <select> nested in its label
    browser.fill("Due date", "2026-03-31")
    browser.check("Restricted")
    browser.click("Save")

    assert browser.url.startswith(f"{site}/saved?")
    assert browser.flash() == "Saved due=2026-03-31, restricted=yes, severity=high, title=Cloud exit"
    assert "Saved" in browser.text()


def test_lookups_that_find_nothing_say_what_the_page_has(browser: Browser) -> None:
    browser.open("/good")
    with pytest.raises(AssertionError, match=r'no <label> reads "Owner"; labels here: "Title \*", "Severity"'):
        browser.fill("Owner", "ada")
    with pytest.raises(AssertionError, match=r'no visible button or link reads "Delete"; there are: "Save", "Cancel"'):
        browser.click("Delete")
    assert browser.flash() == ""


def test_axe_reports_serious_violations_and_passes_an_accessible_page(browser: Browser) -> None:
    browser.open("/bad")
    found = browser.axe()
    rules = sorted(violation.split(":")[0] for violation in found)
    assert rules == ["critical image-alt", "critical label"], "\n".join(found)
    assert "at img:" in "\n".join(found)
    with pytest.raises(AssertionError, match="image-alt"):
        browser.assert_accessible()

    browser.open("/good")
    assert browser.axe() == []
    browser.assert_accessible()


def test_screenshot_writes_a_png_of_the_window(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser.open("/good")
    monkeypatch.delenv("SMITS_CONSOLE_SCREENSHOTS", raising=False)
    scratch = browser.screenshot("good-form")
    assert scratch.parent == browser.scratch_dir
    viewport = browser.driver.execute_script("return [window.innerWidth, window.innerHeight]")
    assert _png_size(scratch) == tuple(viewport)
    assert viewport[0] == WINDOW[0]  # the window is 1366x900; its viewport is that less the browser's own bars

    browser.docs_dir = tmp_path / "docs-console"  # stands in for docs/console
    monkeypatch.setenv("SMITS_CONSOLE_SCREENSHOTS", "1")
    assert browser.screenshot("good-form") == tmp_path / "docs-console" / "good-form.png"
    with pytest.raises(AssertionError, match="lowercase"):
        browser.screenshot("../escape")


def test_reset_clears_cookies_and_site_data(browser: Browser) -> None:
    browser.open("/cookie")
    assert browser.driver.execute_script("return document.cookie") == "session=abc"
    browser.driver.switch_to.new_window("tab")

    browser.reset()

    assert len(browser.driver.window_handles) == 1
    browser.open("/good")
    assert browser.driver.execute_script("return document.cookie + (localStorage.x || '')") == ""


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height
