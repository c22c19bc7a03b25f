"""The console's Deliveries and Admin pages in a real browser (Debian's headless Chromium), with axe-core on every
page and state: an admin subscribes a webhook receiver, sees a delivery fail and resends it, adds a person, an org
unit and an API key (shown once), revokes the key and finds it all in the audit log. With
SMITS_CONSOLE_SCREENSHOTS=1 the pages are saved to docs/console/."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from services.core.settings import Settings
from tests.support.browser import Browser
from tests.support.console_server import serving_all
from tests.support.harness import produce, regulation_event
from tests.support.receiver import Receiver

PASSWORD = "console admin walk password"


@pytest.fixture
async def console(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    """`smits serve all` on the test's database and topics, with Ada the admin; its base URL."""
    async with serving_all(
        settings,
        tmp_path,
        units=("group",),
        people={"ada@corp.example": ("Ada Admin", ["admin"], "group")},
        password=PASSWORD,
        SMITS_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8",
        SMITS_DELIVERY_RETRY_SCHEDULE="0,0.2",
        SMITS_LOG_LEVEL="warning",
    ) as base:
        yield base


def reload_until(browser: Browser, text: str, *, within: float) -> None:
    """Reload the page on screen until it shows `text` (deliveries happen in the background)."""
    deadline = time.monotonic() + within
    while text not in browser.text():
        assert time.monotonic() < deadline, f"{browser.url} never showed {text!r}:\n{browser.text()}"
        time.sleep(0.5)
        browser.open(browser.url)


def page(browser: Browser, path: str, shot: str | None = None) -> str:
    """Open `path`, check it with axe-core, keep a screenshot; its text."""
    browser.open(path)
    return checked(browser, shot)


def checked(browser: Browser, shot: str | None = None) -> str:
    """The page on screen, checked with axe-core (and kept as a screenshot); its text."""
    browser.assert_accessible()
    if shot:
        browser.screenshot(shot, full_page=True)
    return browser.text()


async def test_an_admin_runs_deliveries_people_and_keys_from_the_console(
    console: str, settings: Settings, browser: Browser
) -> None:
    browser.base_url = console
    page(browser, "/auth/login", "sign-in")  # the sign-in form is a page too
    browser.fill("E-mail address", "ada@corp.example")
    browser.fill("Password", PASSWORD)
    browser.click("Sign in")

    with Receiver(default=500) as receiver:
        # A subscription: first refused (the field says why, the typed text is kept), then created.
        assert "No subscription yet" in page(browser, "/subscriptions")
        browser.fill("Endpoint URL", "hooks.example")
        browser.fill("Description", "Ops bridge")
        browser.check("high")
        browser.click("Create subscription")
        assert "The subscription was not created" in checked(browser)
        assert browser.driver.find_element(By.NAME, "url").get_attribute("aria-invalid") == "true"
        assert browser.driver.find_element(By.NAME, "description").get_attribute("value") == "Ops bridge"
        browser.fill("Endpoint URL", receiver.url)
        browser.check("high", on=False)
        browser.click("Create subscription")
        assert "Copy the signing secret now" in checked(browser, "subscription-secret")
        assert str(browser.driver.find_element(By.ID, "secret").get_attribute("value")).startswith("whsec_")

        # A trigger opens a review; its webhook fails every attempt, then is resent and delivered.
        await produce(settings, [regulation_event(event_id="admin-walk-1")])
        browser.click("Go to the subscription")
        subscription = browser.url
        reload_until(browser, "review.opened", within=60)
        reload_until(browser, "failing since", within=30)  # every attempt failed
        checked(browser, "subscription")
        assert "failing since" in page(browser, "/subscriptions", "subscriptions")
        browser.open(subscription)
        delivery = browser.driver.find_element(By.CSS_SELECTOR, "table tbody td a").get_attribute("href")
        browser.open(str(delivery))
        text = checked(browser, "delivery")
        assert "500 (failed)" in text
        receiver.default = 204
        browser.click("Resend")
        assert "Resent" in browser.flash()
        reload_until(browser, "204 (delivered)", within=30)
        checked(browser)

    # No mail server here: the e-mail log says so in words.
    assert "No e-mail yet" in page(browser, "/mail")

    # People and org units.
    page(browser, "/admin/org-units", "admin-org-units")
    browser.fill("Name", "emea")
    browser.fill("Part of", "group")
    browser.click("Create org unit")
    assert "Created the org unit emea under group." in browser.flash()
    page(browser, "/admin", "admin-people")
    browser.fill("E-mail address", "rita at corp")
    browser.fill("Name", "Rita Approver")
    browser.check("approver")
    browser.click("Add person")
    assert "correct the field marked below" in checked(browser)
    assert browser.driver.find_element(By.NAME, "name").get_attribute("value") == "Rita Approver"
    browser.fill("E-mail address", "rita@corp.example")
    browser.check("emea")
    browser.click("Add person")
    assert "Created rita@corp.example (approver)" in browser.flash()
    checked(browser)

    # A key, shown once, then revoked after a confirmation.
    page(browser, "/admin/keys")
    browser.fill("Name (who or what it is for)", "Rita's reports")
    browser.fill("Acts as (e-mail)", "rita@corp.example")
    browser.check("reviews:read")
    browser.click("Create key")
    assert "Copy the new key now" in checked(browser, "admin-key-created")
    assert str(browser.driver.find_element(By.ID, "new-key").get_attribute("value")).startswith("smits_")
    browser.click("Revoke the key Rita's reports")
    assert "Revoke the key “Rita's reports”?" in checked(browser)
    browser.click("Revoke the key")
    assert "Revoked the key “Rita's reports”" in browser.flash()
    checked(browser, "admin-keys")

    # The audit log, searched by target.
    page(browser, "/admin/audit")
    browser.fill("Target (e.g. principal:ana@corp.example, key:…)", "principal:rita@corp.example")
    browser.click("Search")
    assert "user.create" in checked(browser, "admin-audit")

    # Dead letters (nothing refused in this walk), and a page that is not there: both in words, both checked.
    assert "ingest has refused nothing" in page(browser, "/dead-letters", "dead-letters")
    assert "There is no page at this address" in page(browser, "/no-such-page")
