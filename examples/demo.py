"""`make run` demo: a local webhook subscriber, the example triggers sent over HTTP, and what came of them.

Runs against a `smits serve all` on 127.0.0.1:8000 (SMITS_DEMO_API) as the demo's service account (SMITS_DEMO_KEY,
created by deploy/run-local.sh with triggers:write, subscriptions:admin and reviews:read), its webhook receiver on
port 8900 (SMITS_DEMO_RECEIVER_PORT). Stays in the foreground printing webhooks as they arrive until Ctrl-C, or
ends once all is shown with SMITS_DEMO_EXIT=1 (the tests run it so).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

API = os.environ.get("SMITS_DEMO_API", "http://127.0.0.1:8000")
RECEIVER = ("127.0.0.1", int(os.environ.get("SMITS_DEMO_RECEIVER_PORT", "8900")))
EXAMPLES = Path(__file__).parent / "triggers"
received: list[dict[str, object]] = []
printing = threading.Lock()


class Subscriber(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        with printing:
            received.append(body)
            self._show(body)
        self.send_response(204)
        self.end_headers()

    def _show(self, body: dict[str, Any]) -> None:
        data = body["data"]
        what = data.get("title") or (data.get("trigger") or {}).get("id") or "(restricted: ids only)"
        print(
            f"  webhook {self.headers['webhook-id']}  {body['type']:<24} review {str(data.get('review_id'))[:8]}"
            f"  {what}",
            flush=True,
        )

    def log_message(self, format: str, *args: object) -> None:
        pass


def wait_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit("smits did not become ready within 120 s; see .run/smits.log")


def main() -> None:
    server = ThreadingHTTPServer(RECEIVER, Subscriber)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = os.environ.get("SMITS_DEMO_KEY", "")
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=API, timeout=30, headers=headers) as client:
        print("waiting for smits to be ready ...", flush=True)
        wait_ready(client)
        url = f"http://{RECEIVER[0]}:{RECEIVER[1]}/webhooks"
        client.post(
            "/v1/subscriptions", json={"url": url, "event_types": ["review.*"], "description": "make run demo"}
        ).raise_for_status()
        print(f"subscribed {url} to review.*\n\nsending {len(list(EXAMPLES.glob('*.json')))} example triggers:")
        for path in sorted(EXAMPLES.glob("*.json")):
            response = client.post(
                "/v1/triggers", content=path.read_bytes(), headers={"content-type": "application/cloudevents+json"}
            )
            print(f"  {path.name:<36} -> {response.status_code}", flush=True)
        print("\nwebhooks delivered:", flush=True)
        reviews = settle(client)
        print(f"\nreviews opened: {len(reviews)}")
        for review in reviews:
            print(f"  {review['id'][:8]}  {review['severity']:<8} {review['state']:<7} {review['correlation_key']}")
        print(f"webhooks delivered: {len(received)}")
        walk_a_review(reviews)
        kpis = client.get("/v1/kpis").json()
        print(
            "KPIs:", ", ".join(f"{name}={value}" for name, value in kpis.items() if not isinstance(value, dict | list))
        )
        print(
            f"\nconsole: {API}/  (sign in as one of the people above)\n"
            f"API docs: {API}/docs   metrics: {API}/metrics   logs: .run/smits.log\nPress Ctrl-C to stop.",
            flush=True,
        )
    if os.environ.get("SMITS_DEMO_EXIT") == "1":
        return
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


PASSWORD = os.environ.get("SMITS_DEMO_PASSWORD", "smits-demo-password")
ASSESSMENT = {
    "internal_analysis": "Incident reporting runs on three tools; none produces the DORA templates.",
    "impact": {
        name: {"rating": rating, "statement": statement}
        for name, rating, statement in (
            ("perspective", "low", "Resilience stays a stated value."),
            ("position", "medium", "Payments must report major incidents within hours."),
            ("plans", "high", "The 2027 tooling roadmap changes."),
            ("patterns", "medium", "Incident managers file one report instead of three."),
        )
    },
    "constraints": [
        {
            "title": "Reporting deadline",
            "type": "regulatory",
            "severity": "high",
            "mitigation": {"action": "Interim manual template", "owner": "pat@smits.example"},
        }
    ],
    "risk": {"likelihood": 3, "impact": 4, "treatment": "mitigate"},
    "recommendation": {"summary": "Adopt one incident reporting tool with DORA templates by Q2."},
    "approvers": {"mode": "quorum", "names": ["cfo@smits.example", "cio@smits.example"], "required": 1},
}


def signed_in(email: str) -> httpx.Client:
    """A client signed in as `email` (a browser session: the cookie, and the CSRF token on writes)."""
    client = httpx.Client(base_url=API, timeout=30)
    me = client.post("/auth/login", json={"email": email, "password": PASSWORD})
    me.raise_for_status()
    client.headers["x-csrf-token"] = me.json()["csrf_token"]
    return client


def walk_a_review(reviews: list[dict[str, str]]) -> None:
    """The people run one review through its cycle, so every page of the console has something to show: Sam
    owns and assesses the DORA review, Chris approves, Sam publishes the plan, Pat acknowledges it (Rae and
    Indra have not yet: they see it under My work). A second review waits for Sam in triage."""
    dora = next((r for r in reviews if r["correlation_key"] == "regulation:DORA" and r["state"] == "triage"), None)
    if dora is None:
        print("\nno DORA review in triage (run `make clean` for a fresh demo database): the review walk is skipped")
        return
    path = f"/v1/reviews/{dora['id']}"
    with closing(signed_in("sam@smits.example")) as sam, closing(signed_in("cfo@smits.example")) as cfo:
        sam.patch(path, json={"owner": "sam@smits.example"}).raise_for_status()
        sam.post(f"{path}/transitions", json={"to": "assess"}).raise_for_status()
        version = sam.post(f"{path}/assessments", json=ASSESSMENT).json()["version"]
        for state in ("generate", "approval"):
            sam.post(f"{path}/transitions", json={"to": state}).raise_for_status()
        cfo.post(f"{path}/approvals", json={"version": version, "verdict": "approve", "comment": "Funded."})
        sam.post(f"{path}/transitions", json={"to": "publish"}).raise_for_status()
        document = sam.post(
            f"{path}/documents",
            json={
                "kind": "strategy_plan",
                "title": "Incident reporting strategy 2027",
                "summary": "One tool, DORA templates, interim manual reporting.",
                "distribution": [{"name": n} for n in ("pat@smits.example", "rae@smits.example", "cio@smits.example")],
                "publish": True,
                "certified_by": "Sam Strategy",
            },
        ).json()
        other = next((r for r in reviews if r["id"] != dora["id"] and r["state"] == "triage"), None)
        if other is not None:
            sam.patch(f"/v1/reviews/{other['id']}", json={"owner": "sam@smits.example"}).raise_for_status()
    with closing(signed_in("pat@smits.example")) as pat:
        pat.post(f"/v1/documents/{document['document_id']}/acknowledgements", json={}).raise_for_status()
    print("\nSam owns and assessed the DORA review, Chris approved it, the plan is published; Pat acknowledged.")


def settle(client: httpx.Client) -> list[dict[str, str]]:
    """Wait until the reviews and webhooks stop changing (the pipeline is asynchronous)."""
    last: tuple[int, int] = (-1, -1)
    stable_since = time.monotonic()
    deadline = time.monotonic() + 60
    reviews: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        reviews = client.get("/v1/reviews", params={"limit": 100}).json()["items"]
        now = (len(reviews), len(received))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif now[0] and now[1] and time.monotonic() - stable_since > 3:
            break
        time.sleep(0.3)
    return reviews


if __name__ == "__main__":
    main()
