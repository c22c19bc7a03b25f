"""A real browser for the console's tests: Debian's headless Chromium driven by Selenium through
/usr/bin/chromedriver, and `Browser`, a small helper that acts the way a person does (by label and visible text).

Nothing is downloaded at test time: the driver path is given (so Selenium Manager is never run), Chromium's
background networking is off, and axe-core is read from tests/support/vendor/. The fixtures live in
tests/e2e/conftest.py: `chromium` (one browser per test session) and `browser` (a `Browser` on it, with cookies and
site data cleared after every test).

    @pytest.fixture
    def browser_base_url(console: str) -> str:  # the module's running `smits serve`
        return console

    def test_sign_in(browser: Browser) -> None:
        browser.open("/")
        browser.fill("Email", "sm@example.org")
        browser.fill("Password", "...")
        browser.click("Sign in")
        assert "My work" in browser.text()
        browser.assert_accessible()  # axe-core: no serious or critical violation
        browser.screenshot("my-work")  # docs/console/my-work.png when SMITS_CONSOLE_SCREENSHOTS=1
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE_VERSION = "4.14.1"
AXE_SCRIPT = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "console"  # with SMITS_CONSOLE_SCREENSHOTS=1: the README shows them
WINDOW = (1366, 900)  # a laptop screen
# The console renders its flash messages in elements carrying `data-flash` (a role="status" live region).
FLASH_SELECTOR = "[data-flash]"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)
_DATE_LIKE = frozenset({"date", "datetime-local", "time", "month", "week", "color", "range"})
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def require_chromedriver() -> None:
    """Skip when Chromium or its driver is missing, loudly; fail instead on CI (`CI=true`), where
    deploy/chromium.sh ensure (run by `make test`) must have installed them."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if not missing:
        return
    reason = f"{' and '.join(missing)} missing: install them with deploy/chromium.sh ensure (Debian's packages)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(f"!!! BROWSER TESTS NOT RUN: {reason}")


@contextmanager
def chromium(log_dir: Path) -> Iterator[webdriver.Chrome]:
    """Start headless Chromium with a fresh profile; quit it and delete the profile on exit. The driver's and the
    browser's warnings go to log_dir/chromedriver.log (at INFO it would hold axe-core's source once per page)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # belt and braces: Selenium Manager must never download anything
    profile = tempfile.mkdtemp(prefix="smits-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(
        executable_path=str(CHROMEDRIVER),
        service_args=["--log-level=WARNING"],
        log_output=str(log_dir / "chromedriver.log"),
    )
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _left(driver: webdriver.Chrome) -> bool:
    """The document marked before a click is gone (a new page, or the same one loaded again)."""
    try:
        return driver.execute_script("return window.__smitsLeaving !== true") is True
    except WebDriverException:  # between two documents
        return False


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _format_violation(violation: dict[str, Any]) -> str:
    nodes = violation.get("nodes", [])
    lines = [f"{violation['impact']} {violation['id']}: {violation['help']} ({violation['helpUrl']})"]
    for node in nodes[:5]:
        target = " ".join(str(part) for part in node.get("target", []))
        summary = _normalise(node.get("failureSummary") or "")
        lines.append(f"    at {target}: {summary}")
    if len(nodes) > 5:
        lines.append(f"    ... and {len(nodes) - 5} more elements")
    return "\n".join(lines)


# One round trip: the form control a <label> names, matched on the label's own text (nested controls left out),
# exactly or else as the unique label starting with it.
_FIND_BY_LABEL = """
const [wanted, scope] = arguments;
const root = scope ? document.querySelector(scope) : document;
if (!root) return {error: `no element matches ${scope}`};
const norm = (s) => s.replace(/\\s+/g, ' ').trim();
const labels = [...root.querySelectorAll('label')].map((label) => {
  const copy = label.cloneNode(true);
  copy.querySelectorAll('input, select, textarea, button').forEach((e) => e.remove());
  return {label, text: norm(copy.textContent)};
});
let hits = labels.filter((l) => l.text === wanted);
if (!hits.length) hits = labels.filter((l) => l.text.startsWith(wanted));
const all = labels.map((l) => JSON.stringify(l.text)).join(', ') || 'none';
if (!hits.length) return {error: `no <label> reads ${JSON.stringify(wanted)}; labels here: ${all}`};
if (hits.length > 1) return {error: `${hits.length} labels match ${JSON.stringify(wanted)}: ${all}`};
const control = hits[0].label.control;
if (!control) return {error: `the label ${JSON.stringify(hits[0].text)} labels no form control`};
return {control};
"""

# The visible button or link whose text (or value, or aria-label) is exactly the one wanted.
_FIND_CLICKABLE = """
const [wanted, scope] = arguments;
const root = scope ? document.querySelector(scope) : document;
if (!root) return {error: `no element matches ${scope}`};
const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
const selector = 'button, a[href], input[type=submit], input[type=button], input[type=reset], summary, '
  + '[role=button], [role=link], [role=tab], [role=menuitem]';
const visible = [...root.querySelectorAll(selector)].filter((e) => e.getClientRects().length > 0);
const name = (e) => norm(e.tagName === 'INPUT' ? e.value : e.innerText) || norm(e.getAttribute('aria-label'));
const hits = visible.filter((e) => name(e) === wanted);
const all = visible.map((e) => JSON.stringify(name(e))).join(', ') || 'none';
if (!hits.length) return {error: `no visible button or link reads ${JSON.stringify(wanted)}; there are: ${all}`};
if (hits.length > 1) return {error: `${hits.length} buttons or links read ${JSON.stringify(wanted)}; pass within=`};
return {element: hits[0]};
"""

_SET_VALUE = """
const [element, value] = arguments;
element.value = value;
element.dispatchEvent(new Event('input', {bubbles: true}));
element.dispatchEvent(new Event('change', {bubbles: true}));
"""

_RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']})
  .then((results) => done(JSON.stringify(results.violations)))
  .catch((error) => done(JSON.stringify({error: String(error)})));
"""


class Browser:
    """What a person does in the console: open a page, fill a field by its label, click a button or link by its
    text, read the page. Every lookup failure is an AssertionError that says what the page had instead.

    `base_url` is prefixed to relative paths given to `open`; `driver` is the Selenium driver for anything else
    (e.g. `driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Europe/Paris"})`)."""

    def __init__(self, driver: webdriver.Chrome, *, base_url: str | None, scratch_dir: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.scratch_dir = scratch_dir  # screenshots when SMITS_CONSOLE_SCREENSHOTS is not 1
        self.docs_dir = SCREENSHOTS
        self._origins: set[str] = set()

    # -- navigation ------------------------------------------------------------------------------------------
    def open(self, path: str) -> None:
        """Load `path` (relative to base_url, or an absolute http(s) URL) and wait until it has loaded."""
        if not path.startswith(("http://", "https://")):
            assert self.base_url, f"open({path!r}): set browser.base_url (or the browser_base_url fixture) first"
            path = self.base_url.rstrip("/") + "/" + path.lstrip("/")
        self.driver.get(path)
        self._settle()

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    # -- acting ----------------------------------------------------------------------------------------------
    def fill(self, label_text: str, value: str, *, within: str | None = None) -> None:
        """Type `value` into the control labelled `label_text` (a <label>, exact text, or the one label starting
        with it); for a <select>, choose the option showing `value`. `within`: a CSS selector to search under."""
        control = self._labelled(label_text, within)
        tag = control.tag_name.lower()
        kind = (control.get_attribute("type") or "").lower()
        if tag == "select":
            Select(control).select_by_visible_text(value)
        elif kind in {"checkbox", "radio"}:
            raise AssertionError(f"{label_text!r} is a {kind}: use browser.check()")
        elif kind in _DATE_LIKE:  # typed dates depend on the browser's locale: set the value as the form has it
            assert control.is_displayed(), f"{label_text!r} is not shown"
            assert control.is_enabled(), f"{label_text!r} is disabled"
            self.driver.execute_script(_SET_VALUE, control, value)
        else:
            control.clear()
            control.send_keys(value)

    def check(self, label_text: str, on: bool = True, *, within: str | None = None) -> None:
        """Tick (or untick, on=False) the checkbox or radio button labelled `label_text`."""
        control = self._labelled(label_text, within)
        if control.is_selected() != on:
            control.click()

    def click(self, text: str, *, within: str | None = None) -> None:
        """Click the one visible button or link reading `text` (its visible text, an input's value, or its
        aria-label), then wait for any page load it started."""
        found = self._script(_FIND_CLICKABLE, text, within)
        element = found.get("element")
        assert isinstance(element, WebElement), found.get("error")
        navigates = element.tag_name.lower() == "a" or (element.get_attribute("type") or "").lower() == "submit"
        if navigates:  # mark this document, to wait for the next one (readyState would still be this one's)
            self.driver.execute_script("window.__smitsLeaving = true")
        element.click()
        if navigates:
            try:
                WebDriverWait(self.driver, 30, poll_frequency=0.05).until(_left)
            except TimeoutException:
                raise AssertionError(f"clicking {text!r} on {self.url} loaded no page within 30 s") from None
        self._settle()

    # -- reading ---------------------------------------------------------------------------------------------
    def text(self) -> str:
        """The page's visible text, as a person reads it."""
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def flash(self) -> str:
        """The flash messages shown (elements with `data-flash`), one per line; "" when there is none."""
        shown = [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, FLASH_SELECTOR) if e.is_displayed()]
        return "\n".join(text for text in shown if text)

    def wait_for_text(self, text: str, *, within: float = 10.0) -> None:
        """Wait until `text` is visible on the page (live updates, htmx swaps)."""
        try:
            WebDriverWait(self.driver, within, poll_frequency=0.1).until(lambda _: text in self.text())
        except TimeoutException:
            raise AssertionError(f"{text!r} not shown within {within}s on {self.url}; page:\n{self.text()}") from None

    # -- evidence --------------------------------------------------------------------------------------------
    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        """Save a PNG of the page: docs/console/<name>.png when SMITS_CONSOLE_SCREENSHOTS=1, else the test
        session's scratch directory. full_page: the whole page, not just the 1366x900 window."""
        assert _NAME.fullmatch(name), f"screenshot name {name!r}: lowercase letters, digits, - and _ only"
        folder = self.docs_dir if os.environ.get("SMITS_CONSOLE_SCREENSHOTS") == "1" else self.scratch_dir
        folder.mkdir(parents=True, exist_ok=True)
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full_page}
        )
        path = folder / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def axe(self) -> list[str]:
        """Run axe-core (vendored) on the page; its serious and critical violations, one readable string each
        (rule, help, and the offending elements). Use: `assert not (found := browser.axe()), "\\n".join(found)`
        or `browser.assert_accessible()`."""
        if not self.driver.execute_script("return typeof window.axe === 'object'"):
            self.driver.execute_script(_axe_source())
        raw = self.driver.execute_async_script(_RUN_AXE)
        results = json.loads(str(raw))
        if isinstance(results, dict):
            raise AssertionError(f"axe-core failed on {self.url}: {results.get('error')}")
        return [_format_violation(v) for v in results if v.get("impact") in {"serious", "critical"}]

    def assert_accessible(self) -> None:
        """Fail, listing them, if axe-core finds serious or critical violations on the page."""
        found = self.axe()
        assert not found, f"axe-core {AXE_VERSION} on {self.url}:\n" + "\n".join(found)

    # -- between tests ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Clean state for the next test: no cookies, no site data for the origins opened, one blank window at
        the default size."""
        handles = self.driver.window_handles
        for handle in handles[1:]:
            self.driver.switch_to.window(handle)
            self.driver.close()
        self.driver.switch_to.window(handles[0])
        self.driver.get("about:blank")
        self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        for origin in self._origins:
            self.driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
        self._origins.clear()
        self.driver.set_window_size(*WINDOW)

    # -- internals -------------------------------------------------------------------------------------------
    def _settle(self) -> None:
        WebDriverWait(self.driver, 30, poll_frequency=0.05).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )
        match = re.match(r"https?://[^/]+", self.url)
        if match:
            self._origins.add(match.group(0))

    def _labelled(self, label_text: str, within: str | None) -> WebElement:
        found = self._script(_FIND_BY_LABEL, label_text, within)
        control = found.get("control")
        assert isinstance(control, WebElement), f"{found.get('error')} (on {self.url})"
        return control

    def _script(self, script: str, *args: object) -> dict[str, Any]:
        result = self.driver.execute_script(script, *args)
        assert isinstance(result, dict), result
        return result


@functools.cache
def _axe_source() -> str:
    return AXE_SCRIPT.read_text(encoding="utf-8")
