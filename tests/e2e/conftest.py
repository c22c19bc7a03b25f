"""Browser fixtures for the console's tests (tests/support/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium import webdriver

from tests.support.browser import Browser, chromium, require_chromedriver


@pytest.fixture(scope="session")
def chromium_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium per test session (per pytest-xdist worker), started on first use."""
    require_chromedriver()
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


@pytest.fixture
def browser_base_url() -> str | None:
    """Where `browser.open("/path")` goes; override it in a module (or set `browser.base_url` in the test)."""
    return None


@pytest.fixture
def browser(
    chromium_driver: webdriver.Chrome, browser_base_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """A `Browser` on the session's Chromium; cookies, site data and extra windows are cleared after the test."""
    helper = Browser(chromium_driver, base_url=browser_base_url, scratch_dir=tmp_path_factory.getbasetemp() / "screens")
    try:
        yield helper
    finally:
        helper.reset()
