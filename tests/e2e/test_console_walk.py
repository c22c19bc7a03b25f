"""The console in a real browser (Debian's headless Chromium): one review taken through its cycle by the people
who run it, each signed in as themselves, from a trigger sent to Kafka during the test; axe-core on every page;
an uncleared viewer never sees the restricted review. With SMITS_CONSOLE_SCREENSHOTS=1 the pages are saved to
docs/console/ (the README shows them)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import orjson
import pytest
from selenium.webdriver.common.by import By

from services.core.settings import Settings
from tests.support.browser import Browser
from tests.support.console_server import serving_all
from tests.support.kafka import Raw, produce_raw

PASSWORD = "console walk password"
STRUCTURED = [("content-type", b"application/cloudevents+json")]
PEOPLE = {
    "sam@corp.example": ("Sam Strategy", ["strategy_manager", "contributor"], "strategy-office"),
    "cfo@corp.example": ("Chris CFO", ["approver"], "group"),
    "pat@corp.example": ("Pat Payments", ["contributor"], "bu-payments"),
    "rae@corp.example": ("Rae Retail", ["viewer"], "bu-retail"),
    "ada@corp.example": ("Ada Admin", ["admin"], "group"),
}


@pytest.fixture
async def console(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    """`smits serve all` on the test's database and topics, with the walk's people; its base URL."""
    units = ("group", "strategy-office", "bu-payments", "bu-retail")
    async with serving_all(
        settings,
        tmp_path,
        units=units,
        people=PEOPLE,
        password=PASSWORD,
        SMITS_INGEST_RESTRICTED_CATEGORIES="merger_acquisition",
        SMITS_INGEST_RESTRICTED_TO="role:strategy_manager",
        SMITS_LOG_LEVEL="warning",
    ) as base:
        yield base


def _trigger(kind: str, data: Mapping[str, object], subject: str, event_id: str | None = None) -> Raw:
    event = {
        "specversion": "1.0",
        "id": event_id or f"walk-{uuid.uuid4().hex[:12]}",
        "source": "/console/walk",
        "type": f"smits.trigger.{kind}.v1",
        "subject": subject,
        "time": "2026-11-20T09:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    return Raw(value=orjson.dumps(event), headers=STRUCTURED, key=subject.encode())


REGULATION = {
    "regulation_id": "WALK-1",
    "title": "Walk Act: reporting templates",
    "jurisdiction": "EU",
    "issuing_body": "European Supervisory Authorities",
    "change_type": "amendment",
    "effective_date": "2027-01-17",
    "compliance_deadline": "2027-06-30",
}
DEAL = {
    "deal_id": "D-WALK",
    "deal_type": "acquisition",
    "counterparty": "Secret Target Ltd",
    "announced_on": "2026-11-18",
    "expected_close_on": "2027-04-30",
    "affected_business_units": ["bu-hosting"],
}


def sign_in(browser: Browser, email: str) -> None:
    browser.open("/auth/login")
    browser.fill("E-mail address", email)
    browser.fill("Password", PASSWORD)
    browser.click("Sign in")
    assert "My work" in browser.text(), browser.text()


def sign_out(browser: Browser) -> None:
    browser.click("Sign out")
    assert "Sign in to smits" in browser.text()


def page(browser: Browser, path: str, shot: str | None = None) -> str:
    """Open `path`, check it with axe-core, keep a screenshot; its text."""
    browser.open(path)
    browser.assert_accessible()
    if shot:
        browser.screenshot(shot, full_page=True)
    return browser.text()


def until(check: Callable[[], bool], browser: Browser, path: str, *, within: float = 60.0) -> None:
    """Reload `path` until `check()` holds (the pipeline is asynchronous)."""
    deadline = time.monotonic() + within
    while True:
        browser.open(path)
        if check():
            return
        assert time.monotonic() < deadline, f"{path} never showed what was expected:\n{browser.text()}"
        time.sleep(0.5)


def value_of(browser: Browser, name: str) -> str:
    return str(browser.driver.find_element(By.NAME, name).get_attribute("value"))


async def test_a_review_taken_through_its_cycle_in_the_console_by_its_people(
    console: str, settings: Settings, browser: Browser
) -> None:
    browser.base_url = console
    regulation_id = f"walk-{uuid.uuid4().hex[:12]}"
    await produce_raw(
        settings,
        "triggers",
        [
            _trigger("regulation_update", REGULATION, "bu-payments", regulation_id),
            _trigger("merger_acquisition", DEAL, "group"),
        ],
    )
    title = "Walk Act: reporting templates"

    # Sam, the strategy manager, finds the review the trigger opened.
    sign_in(browser, "sam@corp.example")
    until(lambda: title in browser.text() and "Secret Target" in browser.text(), browser, "/board")
    page(browser, "/board", "board")
    secret_link = browser.driver.find_element(By.PARTIAL_LINK_TEXT, "Secret Target").get_attribute("href")
    browser.click(f"regulation update: {title}")
    review_url = browser.url
    browser.assert_accessible()

    # Triage → assess without an owner: refused, with the guard's words.
    browser.click("Move to assess")
    assert "triage needs an owner before assessment" in browser.text()
    browser.assert_accessible()
    browser.fill("Owner (e-mail)", "sam@corp.example")
    browser.click("Set owner")
    assert "The owner is now sam@corp.example." in browser.flash()
    browser.click("Move to assess")
    assert "Moved to assess." in browser.flash()

    # The assessment, first with a validation error: the typed input is kept, the error is beside its field.
    for p, rating in (("Perspective", "low"), ("Position", "medium"), ("Plans", "high"), ("Patterns", "medium")):
        browser.fill(f"{p} rating", rating)
        browser.fill(f"{p} statement", f"{p} changes because of the Walk Act")
    browser.fill("Constraint 1 title", "Reporting deadline")
    browser.fill("Constraint 1 type", "regulatory")
    browser.fill("Constraint 1 severity", "high")
    browser.fill("Constraint 1 mitigation", "Interim manual template")
    browser.fill("Constraint 1 mitigation owner", "pat@corp.example")
    browser.fill("Risk likelihood (1 to 5)", "3")
    browser.fill("Treatment", "mitigate")
    browser.fill("Recommendation", "One reporting tool with the templates by Q2.")
    browser.fill("Approvers (e-mails, comma separated)", "cfo@corp.example")
    browser.click("Record assessment")
    text = browser.text()
    assert "The assessment was not recorded" in text
    assert "Field required" in text  # risk.impact, beside the Impact field
    assert browser.driver.find_element(By.NAME, "risk.impact").get_attribute("aria-invalid") == "true"
    assert value_of(browser, "impact.plans.statement") == "Plans changes because of the Walk Act"
    assert value_of(browser, "recommendation.summary") == "One reporting tool with the templates by Q2."
    browser.assert_accessible()
    browser.screenshot("review-assessment-error", full_page=True)
    browser.fill("Risk impact (1 to 5)", "4")
    browser.click("Record assessment")
    assert "Assessment recorded." in browser.flash()
    for state in ("generate", "approval"):
        browser.click(f"Move to {state}")
        assert f"Moved to {state}." in browser.flash()
    sign_out(browser)

    # Chris approves, as himself, from his own queue.
    sign_in(browser, "cfo@corp.example")
    assert title in page(browser, "/", "my-work-approver")
    browser.click(f"regulation update: {title}")
    browser.fill("Comment", "Funded from the resilience budget.")
    browser.click("Approve")
    assert "Approved" in browser.flash()
    assert "cfo@corp.example: approve" in browser.text()
    sign_out(browser)

    # Sam publishes the plan to Pat.
    sign_in(browser, "sam@corp.example")
    browser.open(review_url)
    browser.click("Move to publish")
    assert "Moved to publish." in browser.flash()
    browser.fill("Kind", "strategy plan")
    browser.fill("Title", "Reporting strategy 2027")
    browser.fill("Summary of the change", "One tool, the templates, interim manual reporting.")
    browser.fill("Distribution (e-mails, one per line)", "pat@corp.example")
    browser.fill("Certified by", "Sam Strategy")
    browser.check("Publish now")
    browser.click("Add document")
    assert "Document published." in browser.flash()
    assert "acknowledged by 0 of 1" in browser.text()
    page(browser, review_url, "review")
    sign_out(browser)

    # Pat sees it under My work and acknowledges it.
    sign_in(browser, "pat@corp.example")
    text = page(browser, "/", "my-work")
    assert "Reporting strategy 2027" in text
    browser.click("Reporting strategy 2027")
    browser.assert_accessible()
    browser.click("Acknowledge version 1")
    assert "Acknowledged version 1" in browser.flash()
    page(browser, browser.url, "document")
    assert "Nothing to acknowledge" in page(browser, "/")

    # Pat sets her quiet hours; a time zone that does not exist is refused beside its field, what she typed kept.
    browser.click("Preferences")
    browser.assert_accessible()
    browser.fill("Time zone", "Europe/Atlantis")
    browser.fill("From", "22:00")
    browser.fill("until", "07:00")
    browser.click("Save preferences")
    browser.assert_accessible()
    assert "correct the field marked below" in browser.text()
    browser.fill("Time zone", "Europe/Berlin")
    browser.click("Save preferences")
    assert "Your preferences are saved." in browser.flash()
    browser.assert_accessible()
    browser.screenshot("preferences", full_page=True)
    assert 'value="Europe/Berlin"' in browser.driver.page_source
    assert 'value="22:00"' in browser.driver.page_source
    sign_out(browser)

    # The board shows where the review stands, in Sam's time zone; he saves the view and it stays his.
    browser.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    sign_in(browser, "sam@corp.example")
    table = page(browser, "/board?layout=table&q=Walk", "board-table")
    assert title in table
    assert "publish" in table
    assert "Asia/Tokyo" in table  # the footer names the zone the dates are shown in
    opened = browser.driver.find_element(By.CSS_SELECTOR, "table.reviews tbody time")
    assert opened.get_attribute("data-localised") == "1"
    assert "UTC" not in opened.text
    assert "UTC" in str(opened.get_attribute("title"))
    browser.fill("Save this view as", "Walk reviews")
    browser.click("Save view")
    assert "Saved the view “Walk reviews”." in browser.flash()
    browser.open("/board")
    browser.click("Walk reviews")
    assert "q=Walk" in browser.url
    assert title in browser.text()

    # The KPIs show the change (Pat, the one required recipient, holds the current copy), and the other pages
    # of the strategy office are there to read.
    kpis = page(browser, "/kpis", "kpis")
    assert "Required recipients holding the current copy 100%" in " ".join(kpis.split())
    assert regulation_id in page(browser, "/triggers", "triggers")
    browser.click("bu-payments")
    assert "Walk Act: reporting templates" in browser.text()  # its CloudEvent
    assert "regulation-update" in browser.text()  # the engine's decision names the policy
    browser.assert_accessible()
    browser.screenshot("trigger", full_page=True)
    page(browser, "/policies", "policies")
    browser.fill("Category", "regulation update")
    browser.fill("Data (a JSON object, the trigger's data)", '{"regulation_id": "X"')
    browser.click("Run the dry run")
    assert value_of(browser, "data") == '{"regulation_id": "X"'  # typed input kept beside the error
    browser.assert_accessible()

    # The board is live: a review opened while it is on screen appears without a reload.
    browser.open("/board")
    live = {**REGULATION, "regulation_id": "WALK-2", "title": "Live Act: second thoughts"}
    await produce_raw(settings, "triggers", [_trigger("regulation_update", live, "bu-retail")])
    browser.wait_for_text("Live Act: second thoughts", within=40)

    # Rae, a viewer not cleared for need-to-know data, sees the regulation review but never the deal.
    sign_out(browser)
    sign_in(browser, "rae@corp.example")
    for path in ("/", "/board", "/board?layout=table", "/triggers", "/kpis", review_url.removeprefix(console)):
        assert "Secret Target" not in page(browser, path)
    assert title in page(browser, "/board")
    browser.open(str(secret_link))
    assert "Secret Target" not in browser.text()
    assert "Not Found" in browser.text()
