"""The console's triggers, dead letters, policies and KPIs pages, read and used by signed-in people through the
app as `smits serve all` composes it (real Kafka and Postgres): what each page says, in words."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.console.pages import triggers as triggers_page
from services.console.web import trigger_href
from services.contracts import topics
from services.core.identity.model import Role
from services.core.settings import Settings
from services.strategy_engine.persistence import DecidedTriggerRow
from services.trigger_ingest.persistence import AcceptedTriggerRow, DuplicateRow, RejectionRow
from tests.support.console import signed_in
from tests.support.dead_letters import plant_dead_letter
from tests.support.harness import ALL, Harness, smits
from tests.support.kafka import Raw, produce_raw, read_topic
from tests.support.waiting import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "triggers"
STRUCTURED = [("content-type", b"application/cloudevents+json")]
WITH_CONSOLE = [*ALL, "console"]


def event(**overrides: Any) -> bytes:
    body = json.loads((EXAMPLES / "regulation_update.json").read_text())
    body.update(overrides)
    return orjson.dumps({key: value for key, value in body.items() if value is not None})


GOOD = Raw(event(), STRUCTURED, b"bu-payments")
UNKNOWN_TYPE = Raw(event(id="bad-type", type="smits.trigger.weather.v1"), STRUCTURED, b"k-type")
NOT_JSON = Raw(b"{not json", STRUCTURED, b"k-json")


async def page(browser: httpx.AsyncClient, path: str, status: int = 200) -> str:
    response = await browser.get(path)
    assert response.status_code == status, (path, response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("text/html")
    return html.unescape(response.text)


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def text_of(markup: str) -> str:
    """The words of a piece of markup, tags dropped and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", markup).split())


async def _ingested(app: Harness, settings: Settings) -> None:
    await produce_raw(settings, topics.TRIGGERS, [GOOD, UNKNOWN_TYPE, NOT_JSON, GOOD])
    await eventually(lambda: app.count(DuplicateRow), lambda n: n == 1, what="the repeat")
    await eventually(lambda: app.count(RejectionRow), lambda n: n == 2, what="the rejections")
    await eventually(lambda: app.count(DecidedTriggerRow), lambda n: n == 1, what="the engine's decision")


async def test_triggers_pages_list_accepted_duplicates_and_rejected_with_reasons_and_show_the_decision(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triggers_page, "PAGE_SIZE", 1)
    # No restricted categories: with some, refused records are for admins and the cleared only (a viewer's view of
    # them is tested in test_console_probe.py).
    open_to_all = settings.model_copy(update={"ingest_restricted_categories": ()})
    async with smits(open_to_all, WITH_CONSOLE) as app:
        await _ingested(app, settings)
        async with signed_in(app, "vera@corp.example", Role.VIEWER) as browser:
            accepted = await page(browser, "/triggers")
            duplicates = await page(browser, "/triggers?status=duplicate")
            rejected = await page(browser, "/triggers?status=rejected")
            next_link = re.search(r'<a href="/triggers\?([^"]+)" rel="next">Next page</a>', rejected)
            assert next_link, "one rejection a page: a link to the next"
            second = await page(browser, f"/triggers?{next_link.group(1)}")
            only_goals = await page(browser, "/triggers?category=goal_change")
            detail = await page(browser, "/triggers//regulatory/watch/reg-dora-1")
            bad_detail = await page(browser, "/triggers//regulatory/watch/bad-type")
            missing = await page(browser, "/triggers//regulatory/watch/nope", status=404)
            bad_since = await page(browser, "/triggers?since=last-week", status=422)
        async with httpx.AsyncClient(transport=app.transport, base_url="http://127.0.0.1:8000") as stranger:
            anonymous = await stranger.get("/triggers?status=rejected")
    assert f'href="{trigger_href("/regulatory/watch", "reg-dora-1")}"' in html.unescape(accepted)
    assert "bu-payments" in accepted
    assert "regulation update" in accepted
    assert 'aria-current="page">Accepted' in accepted
    assert "/dead-letters" not in accepted  # not an admin: neither the nav entry nor the link
    assert "reg-dora-1" in duplicates
    assert "partition" in duplicates
    rejected_words = text_of(rejected) + text_of(second)  # newest first, one a page
    assert "unknown type unknown trigger type 'smits.trigger.weather.v1'" in rejected_words
    assert "invalid JSON" in rejected_words
    assert "no id or source could be read" in rejected_words
    assert "reg-dora-1" not in rejected
    assert 'rel="next"' not in second
    assert "status=rejected" in next_link.group(1)
    assert "No accepted trigger matches these filters" in only_goals
    detail_words = text_of(detail)
    assert "Status accepted (received 1 more time(s), ignored as duplicates)" in detail_words
    assert "Outcome opened : open the review" in detail_words
    assert 'href="/policies#policy-regulation-update"' in detail
    assert re.search(r'href="/reviews/[0-9a-f-]{36}"', detail)
    assert '"regulation_id": "DORA"' in detail  # the CloudEvent, indented
    assert '"type": "smits.trigger.regulation_update.v1"' in detail
    assert "Reason unknown type : unknown trigger type 'smits.trigger.weather.v1'" in text_of(bad_detail)
    assert "the engine never saw it" in bad_detail
    assert "There is no trigger with this source and id that you can see." in missing
    assert "since" in text_of(bad_since)
    assert 'id="since-error"' in bad_since
    assert 'value="last-week"' in bad_since  # what was typed is kept
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/auth/login?next=")


async def test_admins_see_dead_letters_and_replay_one_which_ingest_reads_again(settings: Settings) -> None:
    fixed = Raw(event(id="fixed-after-replay"), STRUCTURED, b"bu-payments")
    async with smits(settings, WITH_CONSOLE) as app:
        await produce_raw(settings, topics.TRIGGERS, [UNKNOWN_TYPE])
        await eventually(lambda: app.count(RejectionRow), lambda n: n == 1, what="the rejection")
        planted = await plant_dead_letter(app, settings, fixed, offset=50_000)
        async with signed_in(app, "ada@corp.example", Role.ADMIN) as admin:
            listed = await page(admin, "/dead-letters")
            token = csrf_of(listed)
            forged = await admin.post(f"/dead-letters/{planted}/replay", data={"csrf_token": "forged"})
            replayed = await admin.post(f"/dead-letters/{planted}/replay", data={"csrf_token": token})
            after = await page(admin, replayed.headers["location"])
            await eventually(lambda: app.count(AcceptedTriggerRow), lambda n: n == 1, what="the replay accepted")
            accepted = await page(admin, "/triggers")
            gone = await admin.post("/dead-letters/999999/replay", data={"csrf_token": token})
        async with signed_in(app, "vic@corp.example", Role.STRATEGY_MANAGER) as manager:
            refused = await page(manager, "/dead-letters", status=403)
            refused_replay = await manager.post(f"/dead-letters/{planted}/replay", data={"csrf_token": "x"})
            manager_csrf = csrf_of(await page(manager, "/policies"))
            refused_with_token = await manager.post(
                f"/dead-letters/{planted}/replay", data={"csrf_token": manager_csrf}
            )
        inputs = await read_topic(settings, topics.TRIGGERS)
    words = text_of(listed)
    assert 'href="/dead-letters"' in listed  # the admin's nav has it
    assert "unknown type (UnknownType) unknown trigger type 'smits.trigger.weather.v1'" in words
    assert "skipped by operator (SkippedByOperator)" in words
    assert f'action="/dead-letters/{planted}/replay"' in listed
    assert listed.count(">Replay</button>") == 2
    assert forged.status_code == 403
    assert "This form has expired or came from another site" in forged.text
    assert replayed.status_code == 303
    assert f"Replayed dead letter {planted} to {settings.topic(topics.TRIGGERS)}" in after
    assert "fixed-after-replay" in accepted
    replay = [r for r in inputs if r.key == b"bu-payments"]
    assert len(replay) == 1
    assert replay[0].value == fixed.value
    assert list(replay[0].headers) == STRUCTURED
    assert gone.status_code == 404
    assert "no dead letter 999999" in gone.text
    assert "needs the 'admin' scope" in refused
    assert "Dead letters" not in refused.split("<main")[0]  # not in a non-admin's nav
    assert refused_replay.status_code == 403
    assert refused_with_token.status_code == 403
    assert "needs the 'admin' scope" in html.unescape(refused_with_token.text)


async def test_policies_page_lists_the_policies_and_dry_runs_an_event_with_errors_beside_fields(
    settings: Settings,
) -> None:
    async with (
        smits(settings, WITH_CONSOLE) as app,
        signed_in(app, "sam@corp.example", Role.STRATEGY_MANAGER) as browser,
    ):
        listed = await page(browser, "/policies")
        token = csrf_of(listed)
        fields = {
            "csrf_token": token,
            "category": "regulation_update",
            "severity": "high",
            "subject": "bu-payments",
            "source": "/regulatory/watch",
            "data": '{"regulation_id": "NIS2", "title": "NIS 2"}',
        }
        ran = await browser.post("/policies/dry-run", data=fields)
        no_subject = await browser.post("/policies/dry-run", data={**fields, "subject": ""})
        not_json = await browser.post("/policies/dry-run", data={**fields, "data": '{"regulation_id": NIS2'})
        not_object = await browser.post("/policies/dry-run", data={**fields, "data": "[1, 2]"})
        both = await browser.post("/policies/dry-run", data={**fields, "subject": "", "data": "{"})
    words = text_of(listed)
    assert "regulation-update open review" in words
    assert "Grouping window 60 days" in words
    assert "Need to know only role:strategy_manager" in words
    assert '<label for="f-data">' in listed
    assert ran.status_code == 200, ran.text
    result = text_of(html.unescape(ran.text))
    assert "This event would open a new review" in result
    assert "Policy regulation-update" in result
    assert "Correlation key regulation:NIS2" in result
    assert no_subject.status_code == 422
    subject_page = html.unescape(no_subject.text)
    assert re.search(r'<p class="field-error" id="subject-error">[^<]*(at least 1|String should)', subject_page)
    assert 'aria-describedby="subject-error"' in subject_page
    assert '{"regulation_id": "NIS2", "title": "NIS 2"}</textarea>' in subject_page  # typed input kept
    assert 'value="/regulatory/watch"' in subject_page
    assert '<option value="high" selected>' in subject_page
    assert not_json.status_code == 422
    json_page = html.unescape(not_json.text)
    assert re.search(r'<p class="field-error" id="data-error">is not JSON', json_page)
    assert '{"regulation_id": NIS2</textarea>' in json_page
    assert not_object.status_code == 422
    assert re.search(r'id="data-error">[^<]*dictionary', html.unescape(not_object.text))
    both_page = html.unescape(both.text)  # every error at once, not the JSON one first and the rest after
    assert 'id="data-error">is not JSON' in both_page
    assert 'id="subject-error">' in both_page


async def test_kpis_page_draws_the_volumes_as_svg_bar_charts_with_the_numbers_in_tables(settings: Settings) -> None:
    async with smits(settings, WITH_CONSOLE) as app, signed_in(app, "kim@corp.example", Role.VIEWER) as browser:
        before = await page(browser, "/kpis")
        await _ingested(app, settings)
        after = await page(browser, "/kpis")
    assert "no data yet" in before
    assert "No data yet: nothing to count here." in before  # no volume to chart
    volume = after.split('id="volume"')[1].split("</section>")[0]
    assert '<svg class="chart" role="img"' in volume
    assert '<title id="volume-1-title">Trigger volume by category: triggers</title>' in volume
    assert "Trigger volume by category: triggers. regulation update: 1." in volume  # the <desc>
    assert re.search(r'<rect class="bar" x="[\d.]+" y="[\d.]+" width="[1-9][\d.]*"', volume)
    assert '<th scope="row">regulation update</th><td>1</td>' in volume
    outcomes = after.split('id="outcomes"')[1].split("</section>")[0]
    assert "opened: 1; attached: 0; recorded: 0." in outcomes
    assert '<th scope="row">attached</th><td>0</td>' in outcomes
    assert "Trigger to review opened" in after
