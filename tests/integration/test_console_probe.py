"""An adversarial probe of the console: what a hostile, hurried or confused person meets. Each test states the
behaviour the console should have; a failing one is a defect found (see the branch's report)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from services.contracts import topics
from services.core.identity.model import Role
from services.core.settings import Settings
from services.strategy_engine.persistence import ReviewRow
from services.trigger_ingest.persistence import RejectionRow
from tests.support.console import PASSWORD, signed_in
from tests.support.harness import ALL, Harness, smits
from tests.support.kafka import Raw, produce_raw
from tests.support.waiting import eventually

WITH_CONSOLE = [*ALL, "console"]
SITE = "http://127.0.0.1:8000"
STRUCTURED = [("content-type", b"application/cloudevents+json")]


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def token(browser: httpx.AsyncClient) -> str:
    return csrf_of((await browser.get("/board")).text)


def is_html_page(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith("text/html")


async def trigger(app: Harness, body: dict[str, Any]) -> None:
    answer = await app.api.post(
        "/v1/triggers", content=orjson.dumps(body), headers={"content-type": "application/cloudevents+json"}
    )
    assert answer.status_code in (200, 202), answer.text


def regulation(event_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/regulatory/watch",
        "type": "smits.trigger.regulation_update.v1",
        "subject": "bu-payments",
        "time": "2026-11-20T09:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "regulation_id": f"REG-{event_id}",
            "title": "Digital Operational Resilience Act",
            "jurisdiction": "EU",
            "issuing_body": "European Parliament",
            "change_type": "amendment",
            "effective_date": "2027-01-17",
        },
    }
    body.update(changes)
    return body


def deal(event_id: str, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/corpdev/deals",
        "type": "smits.trigger.merger_acquisition.v1",
        "subject": "group",
        "time": "2026-11-20T09:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "deal_id": "D-4711",
            "deal_type": "acquisition",
            "counterparty": "Northwind Cloud Ltd",
            "announced_on": "2026-11-18",
            **data,
        },
    }


async def reviews(app: Harness) -> list[ReviewRow]:
    async with app.runtime.uow.begin() as session:
        return list((await session.scalars(select(ReviewRow))).all())


# --- robustness: garbage in the address answers a page in words, never a 500 -------------------------------


async def test_a_malformed_address_is_a_4xx_page_in_words_not_a_500(settings: Settings) -> None:
    """A mistyped review id, an unknown layout, an over-long search or a bad audit page size is the person's
    mistake: a 4xx page saying so, not 'This page failed on our side' (500) with a stack trace in the log."""
    async with smits(settings, WITH_CONSOLE) as app, signed_in(app, "ada@corp.example", Role.ADMIN) as browser:
        answers = {
            path: await browser.get(path)
            for path in (
                "/reviews/not-a-uuid",
                "/documents/42",
                "/board?layout=grid",
                "/board?q=" + "x" * 201,
                "/triggers?since=" + "9" * 600,
                "/admin/audit?limit=0",
                "/admin/keys/not-a-uuid/revoke",
            )
        }
    failed = {path: answer.status_code for path, answer in answers.items() if answer.status_code >= 500}
    assert not failed, f"a person's malformed address answered as a server failure: {failed}"
    assert all(is_html_page(answer) for answer in answers.values())


async def test_a_form_with_too_many_fields_or_a_file_is_refused_as_the_persons_mistake(settings: Settings) -> None:
    """A form with more fields than the console reads, or with a file in it, is a 400 page, not a 500."""
    async with (
        smits(settings, WITH_CONSOLE) as app,
        signed_in(app, "ada@corp.example", Role.STRATEGY_MANAGER) as browser,
    ):
        csrf = await token(browser)
        many = [("csrf_token", csrf), ("name", "v")] + [(f"f{index}", "x") for index in range(500)]
        crowded = await browser.post("/board/views", data=dict(many))
        with_file = await browser.post(
            "/board/views", data={"csrf_token": csrf, "name": "v"}, files={"query": ("q.txt", b"q=1")}
        )
    assert (crowded.status_code, with_file.status_code) == (400, 400)


async def test_reloading_the_address_a_form_posted_to_is_a_page_not_json(settings: Settings) -> None:
    """After a refused form the address bar shows the form's action (`/policies/dry-run`,
    `/reviews/{id}/assessment`, `/admin/users`): opening that address again (reload in a new tab, a bookmark,
    pasting it to a colleague) must give a page, not a bare JSON 405."""
    async with smits(settings, WITH_CONSOLE) as app, signed_in(app, "ada@corp.example", Role.ADMIN) as browser:
        answers = {
            path: await browser.get(path)
            for path in (
                "/policies/dry-run",
                "/admin/users",
                "/board/views",
                "/reviews/00000000-0000-0000-0000-000000000000/assessment",
                "/no-such-page",
            )
        }
    json_answers = {
        path: answer.headers.get("content-type") for path, answer in answers.items() if not is_html_page(answer)
    }
    assert not json_answers, f"a person's browser was answered with JSON: {json_answers}"


async def test_an_oversized_form_is_a_page_in_words(settings: Settings) -> None:
    """Pasting a very long text into a form (over the 1 MiB request cap) gets an HTML page saying it is too
    long, not a raw problem+json body in the browser."""
    async with (
        smits(settings, WITH_CONSOLE) as app,
        signed_in(app, "ada@corp.example", Role.STRATEGY_MANAGER) as browser,
    ):
        csrf = await token(browser)
        answer = await browser.post(
            "/policies/dry-run", data={"csrf_token": csrf, "data": '{"x": "' + "y" * (1024 * 1024) + '"}'}
        )
    assert answer.status_code == 413
    assert is_html_page(answer), answer.headers.get("content-type")


# --- need-to-know -------------------------------------------------------------------------------------------


async def test_a_refused_deal_is_not_shown_to_someone_without_need_to_know(settings: Settings) -> None:
    """A merger/acquisition event is need-to-know (SMITS_INGEST_RESTRICTED_CATEGORIES): an accepted one is
    absent from the triggers pages for a viewer. One that ingest refused (here: a deal type it does not know)
    must be just as absent: its source, id and the refusal's words name the deal."""
    async with smits(settings, WITH_CONSOLE) as app:
        await trigger(app, deal("deal-4711"))
        refused = orjson.dumps(deal("deal-northwind-takeover", deal_type="hostile_takeover"))
        await produce_raw(settings, topics.TRIGGERS, [Raw(refused, STRUCTURED, b"deal")])
        await eventually(lambda: reviews(app), lambda found: len(found) == 1, what="the deal's review")
        await eventually(lambda: app.count(RejectionRow), lambda n: n == 1, what="the refused deal")
        async with signed_in(app, "vera@corp.example", Role.VIEWER) as browser:
            pages = {
                path: (await browser.get(path)).text
                for path in (
                    "/",
                    "/board",
                    "/board?layout=table&state=triage",
                    "/triggers",
                    "/triggers?status=duplicate",
                    "/triggers?status=rejected",
                    "/triggers//corpdev/deals/deal-northwind-takeover",
                    "/kpis",
                )
            }
    leaked = {path for path, text in pages.items() if "deal-" in text or "Northwind" in text or "D-4711" in text}
    assert not leaked, f"a restricted deal is named to an uncleared viewer on {sorted(leaked)}"


# --- cross-site ---------------------------------------------------------------------------------------------


def console_routes(app: Harness, method: str) -> list[str]:
    """The paths of the console's routes answering `method`, as the app composes them."""
    from services.console.web import ConsoleRoute

    found: set[str] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes)
            elif isinstance(route, ConsoleRoute) and method in (route.methods or set()):
                found.add(route.path)

    walk(app.transport.app.routes)  # type: ignore[attr-defined]
    assert found, "no console route found"
    return sorted(found)


def filled(path: str, review_id: str) -> str:
    return (
        path.replace("{review_id}", review_id)
        .replace("{document_id}", "00000000-0000-0000-0000-000000000001")
        .replace("{key_id}", "00000000-0000-0000-0000-000000000002")
        .replace("{subscription_id}", "00000000-0000-0000-0000-000000000003")
        .replace("{delivery_id}", "00000000-0000-0000-0000-000000000004")
        .replace("{dead_letter_id}", "1")
        .replace("{email}", "ada@corp.example")
        .replace("{source:path}", "/regulatory/watch")
        .replace("{event_id}", "reg-1")
    )


async def test_every_console_post_refuses_a_form_without_the_sessions_csrf_token(settings: Settings) -> None:
    """Every console form post (not only the ones we thought of) is refused, 403, when its csrf_token is
    missing or is another session's; it does nothing."""
    async with smits(settings, WITH_CONSOLE) as app:
        await trigger(app, regulation("reg-1"))
        found = await eventually(lambda: reviews(app), lambda rows: len(rows) == 1, what="a review")
        review_id = str(found[0].id)
        posts = console_routes(app, "POST")
        assert "/board/views" in posts
        assert "/sign-out" in posts
        async with signed_in(app, "ada@corp.example", Role.ADMIN) as victim:
            async with signed_in(app, "mallory@corp.example", Role.VIEWER) as attacker:
                foreign = await token(attacker)
            answers: dict[str, tuple[int, int]] = {}
            for path in posts:
                target = filled(path, review_id)
                form = {"name": "x", "owner": "mallory@corp.example", "to": "assess", "verdict": "approve"}
                missing = await victim.post(target, data=form, headers={"origin": "https://evil.example"})
                wrong = await victim.post(target, data={**form, "csrf_token": foreign})
                answers[path] = (missing.status_code, wrong.status_code)
            still = (await victim.get("/board")).status_code
    accepted = {path: codes for path, codes in answers.items() if codes != (403, 403)}
    assert not accepted, f"console posts not refused without the session's CSRF token: {accepted}"
    assert still == 200  # the sign-out without a token did not sign the victim out


async def test_every_console_page_forbids_framing_and_caching(settings: Settings) -> None:
    """Every page the console answers (including its error pages and a refused form's page) carries
    frame-ancestors 'none' / X-Frame-Options DENY and Cache-Control no-store."""
    async with smits(settings, WITH_CONSOLE) as app:
        await trigger(app, regulation("reg-1"))
        found = await eventually(lambda: reviews(app), lambda rows: len(rows) == 1, what="a review")
        review_id = str(found[0].id)
        gets = [filled(path, review_id) for path in console_routes(app, "GET") if not path.startswith("/static")]
        async with signed_in(app, "ada@corp.example", Role.ADMIN) as browser:
            answers = {path: await browser.get(path) for path in gets}
            csrf = await token(browser)
            answers["POST /reviews/{id}/transition"] = await browser.post(
                f"/reviews/{review_id}/transition", data={"csrf_token": csrf, "to": "closed"}
            )
            answers["POST /policies/dry-run"] = await browser.post(
                "/policies/dry-run", data={"csrf_token": csrf, "data": "{not json"}
            )
    bare = {
        path: (answer.status_code, answer.headers.get("x-frame-options"), answer.headers.get("cache-control"))
        for path, answer in answers.items()
        if is_html_page(answer)
        and (
            answer.headers.get("x-frame-options") != "DENY"
            or "frame-ancestors 'none'" not in answer.headers.get("content-security-policy", "")
            or answer.headers.get("cache-control") != "no-store"
        )
    }
    assert not bare, f"console pages without the anti-framing or no-store headers: {bare}"


# --- injection ----------------------------------------------------------------------------------------------

HOSTILE = '"><img src=x onerror=alert(1)><a hx-post="/sign-out" hx-trigger="load">'


async def test_values_from_triggers_and_people_are_shown_as_text_never_as_markup(settings: Settings) -> None:
    """Trigger ids, subjects and data (the review's title), a saved view's name and the flash message that
    names it are text on every page: no element or htmx attribute of theirs reaches the page."""
    async with smits(settings, WITH_CONSOLE) as app:
        await trigger(app, regulation(f"reg{HOSTILE}", subject=f"subject{HOSTILE}"))
        found = await eventually(lambda: reviews(app), lambda rows: len(rows) == 1, what="a review")
        review_id = str(found[0].id)
        async with signed_in(app, "ada@corp.example", Role.STRATEGY_MANAGER) as browser:
            csrf = await token(browser)
            saved = await browser.post(
                "/board/views", data={"csrf_token": csrf, "name": f"view{HOSTILE}", "query": "q=1"}
            )
            texts = [(await browser.get(saved.headers["location"])).text]
            for path in ("/", "/board", "/board?layout=table", f"/reviews/{review_id}", "/triggers", "/kpis"):
                texts.append((await browser.get(path)).text)
            triggers_page = texts[-2]
            link = re.search(r'<a href="(/triggers/[^"]+)">', triggers_page)
            assert link, "the trigger is listed with a link"
            texts.append((await browser.get(html.unescape(link.group(1)))).text)
            texts.append(
                (
                    await browser.post(
                        "/policies/dry-run",
                        data={
                            "csrf_token": csrf,
                            "category": "regulation_update",
                            "subject": HOSTILE,
                            "source": HOSTILE,
                            "data": "{}",
                        },
                    )
                ).text
            )
    assert not [text for text in texts if "<img src=x" in text or 'hx-post="/sign-out"' in text]


async def test_a_reviews_trigger_links_to_that_triggers_page_whatever_its_id(settings: Settings) -> None:
    """A CloudEvent id may hold any character but NUL. The review page links each trigger to the trigger's
    page; an id with `?`, `#`, `%` or a space must still lead there (the triggers list quotes it; the review
    page puts it in the address raw, so the link leads to 'no trigger' or to another page)."""
    event_id = "INC 2026-11#3?x=%41"
    async with smits(settings, WITH_CONSOLE) as app:
        await trigger(app, regulation(event_id))
        found = await eventually(lambda: reviews(app), lambda rows: len(rows) == 1, what="a review")
        async with signed_in(app, "vera@corp.example", Role.VIEWER) as browser:
            review = (await browser.get(f"/reviews/{found[0].id}")).text
            link = re.search(r'<a href="(/triggers/[^"]+)">', review)
            assert link, "the review links its trigger"
            followed = await browser.get(html.unescape(link.group(1)))
    assert followed.status_code == 200, (html.unescape(link.group(1)), followed.status_code)
    assert event_id in html.unescape(followed.text)


async def test_a_trigger_whose_id_holds_a_slash_has_a_page(settings: Settings) -> None:
    """CloudEvent ids like `INC/2026/0042` are common (ticket numbers). The triggers list links such a trigger
    to its page, but the page answers 404: the route splits source and id at the id's own slash (the
    percent-encoded `%2F` is decoded before routing), in the console as in `GET /v1/triggers/{source}/{id}`."""
    async with smits(settings, WITH_CONSOLE) as app:
        await trigger(app, regulation("INC/2026/0042"))
        await eventually(lambda: reviews(app), lambda rows: len(rows) == 1, what="a review")
        async with signed_in(app, "vera@corp.example", Role.VIEWER) as browser:
            listed = (await browser.get("/triggers")).text
            link = re.search(r'<a href="(/triggers/[^"]+)">', listed)
            assert link, "the trigger is listed with a link"
            followed = await browser.get(html.unescape(link.group(1)))
    assert followed.status_code == 200, (
        html.unescape(link.group(1)),
        followed.status_code,
        re.sub(r"<[^>]+>", " ", followed.text)[-300:],
    )


# --- one person's things are theirs -------------------------------------------------------------------------


async def test_saved_views_belong_to_one_person_even_with_long_addresses(settings: Settings) -> None:
    """Saved views are stored per person under their e-mail cut to 64 characters: two people whose addresses
    share their first 64 characters (a long shared domain, a long local part) see, replace and delete each
    other's views — names that can say what someone is watching ('Northwind deal, my reviews')."""
    prefix = "strategy.office." + "x" * 40 + "@corp.example"  # 69 characters: the cut falls in the domain
    first, second = prefix + ".com", prefix + ".org"
    assert first[:64] == second[:64]
    async with smits(settings, WITH_CONSOLE) as app, signed_in(app, first, Role.STRATEGY_MANAGER) as ana:
        await ana.post(
            "/board/views", data={"csrf_token": await token(ana), "name": "Northwind deal", "query": "q=northwind"}
        )
        async with signed_in(app, second, Role.VIEWER) as ben:
            bens_board = (await ben.get("/board")).text
    assert "Northwind deal" not in bens_board, "another person's saved view is on this person's board"


async def test_signing_in_after_a_refused_post_never_leaves_the_site(settings: Settings) -> None:
    """A form posted with an expired session sends the person to sign in with `next` taken from the Referer;
    a Referer pointing off-site (or `//elsewhere`) must not become the place sign-in lands."""
    async with smits(settings, WITH_CONSOLE) as app:
        async with signed_in(app, "ada@corp.example", Role.VIEWER):
            pass
        landings = []
        for referer in (
            f"{SITE}//evil.example/x",
            "https://evil.example/",
            f"{SITE}/\\evil.example",
            f"{SITE}@evil.example/",
        ):
            async with httpx.AsyncClient(transport=app.transport, base_url=SITE) as browser:
                sent = await browser.post("/board/views", data={"name": "x"}, headers={"referer": referer})
                assert sent.status_code == 303
                next_value = httpx.URL(sent.headers["location"]).params["next"]
                signed = await browser.post(
                    "/auth/login", data={"email": "ada@corp.example", "password": PASSWORD, "next": next_value}
                )
                landings.append(signed.headers["location"])
    assert all(
        landing.startswith("/") and not landing.startswith("//") and "\\" not in landing for landing in landings
    ), landings


# --- the board's own refresh --------------------------------------------------------------------------------


async def test_the_boards_refresh_after_the_session_ended_sends_the_person_to_sign_in(settings: Settings) -> None:
    """The board refreshes itself with htmx every 10 s (`hx-get`, `hx-select="#board"`). Once the session has
    ended, that request is redirected (303) to the sign-in form; htmx follows it, finds no `#board` in the
    sign-in page and swaps the board for nothing: a wall display goes blank and stays blank. An htmx request
    without a session should be told to navigate (`HX-Redirect`, or `HX-Location`) to the sign-in page."""
    async with (
        smits(settings, WITH_CONSOLE) as app,
        httpx.AsyncClient(transport=app.transport, base_url=SITE) as browser,
    ):
        refresh = await browser.get(
            "/board?layout=columns", headers={"hx-request": "true", "hx-current-url": f"{SITE}/board"}
        )
    told = refresh.headers.get("hx-redirect") or refresh.headers.get("hx-location") or refresh.headers.get("hx-refresh")
    assert told, (refresh.status_code, dict(refresh.headers))


async def test_an_open_board_does_not_keep_an_idle_session_alive(settings: Settings) -> None:
    """`SMITS_SESSION_IDLE_S` ends a session after that long without a request. The board's background
    refresh is a request every 10 s, so a board left open on an unattended desk keeps the session alive until
    the absolute limit (7 days by default). A background refresh should not count as the person's activity:
    here the person was last active 100 s ago (idle limit 120 s) and only the board refreshed since."""
    from sqlalchemy import update

    from services.core.identity.store import SessionRow

    idle = settings.model_copy(update={"session_idle_s": 120.0})
    async with smits(idle, WITH_CONSOLE) as app, signed_in(app, "ada@corp.example", Role.VIEWER) as browser:
        away = datetime.now(UTC) - timedelta(seconds=100)
        async with app.runtime.uow.begin() as session:
            await session.execute(update(SessionRow).values(last_seen_at=away))
        refreshed = await browser.get("/board?layout=columns", headers={"hx-request": "true"})
        assert refreshed.status_code == 200
        async with app.runtime.uow.begin() as session:
            seen = await session.scalar(select(SessionRow.last_seen_at))
    assert seen is not None
    assert seen <= away + timedelta(seconds=1), (
        f"the board's background refresh counted as activity: last seen moved from {away} to {seen}"
    )


async def test_saving_and_deleting_a_view_is_in_the_audit_log_as_the_person(settings: Settings) -> None:
    """Every action is accountable: saved views are written by the console itself (not through /v1), so the console
    audits them; deleting a view one does not have records nothing."""
    async with smits(settings, WITH_CONSOLE) as app, signed_in(app, "ana@corp.example", Role.STRATEGY_MANAGER) as ana:
        csrf = await token(ana)
        await ana.post("/board/views", data={"csrf_token": csrf, "name": "Northwind deal", "query": "q=northwind"})
        await ana.post("/board/views/delete", data={"csrf_token": csrf, "name": "Northwind deal"})
        await ana.post("/board/views/delete", data={"csrf_token": csrf, "name": "never saved"})
        found = (await app.api.get("/v1/audit", params={"target": "saved_view:Northwind deal"})).json()["records"]
        nothing = (await app.api.get("/v1/audit", params={"target": "saved_view:never saved"})).json()["records"]
    assert [(r["action"], r["principal"], r["method"]) for r in found] == [
        ("saved_view.delete", "ana@corp.example", "session"),
        ("saved_view.create", "ana@corp.example", "session"),
    ]
    assert nothing == []
