"""`python -m bench [--quick]`: raw limits and smits figures from one run, printed as a Markdown table.

Starts its own Kafka broker and PostgreSQL cluster (ports 29392/29393 and 25435, below the ephemeral range),
runs every stage on fresh topics (a per-run prefix) and fresh databases, and writes the table and the raw
numbers to `.run/bench/`. Timings are reported, never asserted; counts are checked exactly, so a stage that
loses or duplicates anything fails the run.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import typer

from bench import engine_limit, infra, raw, stages
from bench.console import console as console_stage
from bench.infra import log
from bench.stages import Database, StageResult
from bench.workload import build
from services.core.settings import Settings

KAFKA_PORT = 29392
PG_PORT = 25435


@dataclass(kw_only=True, frozen=True)
class Plan:
    triggers: int
    posts: int
    webhooks: int
    latencies: tuple[tuple[int, float], ...]  # (triggers per second, seconds)
    soak: int
    soak_rate: int
    console_reviews: int
    console_requests: int
    latency: bool = True
    batch: int = 500  # smits' consumer_max_records, the raw limits' batch too


FULL = Plan(
    triggers=200_000,
    posts=10_000,
    webhooks=30_000,
    latencies=((500, 60),),
    soak=1_000_000,
    soak_rate=1000,
    console_reviews=10_000,
    console_requests=30,
)
QUICK = Plan(
    triggers=5_000,
    posts=1_000,
    webhooks=2_000,
    latencies=((500, 5),),
    soak=10_000,
    soak_rate=1000,
    console_reviews=1_000,
    console_requests=5,
)

app = typer.Typer(add_completion=False)


@app.command()
def main(
    quick: Annotated[bool, typer.Option(help="small sizes (< 2 min), to catch a collapse")] = False,
    triggers: Annotated[int | None, typer.Option(help="records pre-produced for ingest")] = None,
    soak: Annotated[int | None, typer.Option(help="triggers in the soak (0 skips it)")] = None,
    soak_rate: Annotated[int | None, typer.Option(help="soak production rate per second")] = None,
    keep_running: Annotated[bool, typer.Option(help="leave Kafka and Postgres up afterwards")] = False,
    latency: Annotated[bool, typer.Option(help="run the end-to-end latency stage")] = True,
    console: Annotated[bool, typer.Option(help="run the console stage (pages over 10,000 reviews)")] = True,
    console_reviews: Annotated[int | None, typer.Option(help="reviews in the console stage's database")] = None,
    console_requests: Annotated[int | None, typer.Option(help="timed GETs of each console page")] = None,
    profile: Annotated[bool, typer.Option(help="py-spy profiles of every service into .run/bench/profiles")] = False,
    kafka_port: Annotated[int, typer.Option(help="the bench's own Kafka broker (and the next port)")] = KAFKA_PORT,
    pg_port: Annotated[int, typer.Option(help="port of the bench's own PostgreSQL cluster")] = PG_PORT,
) -> None:
    base = QUICK if quick else FULL
    plan = Plan(
        triggers=triggers or base.triggers,
        posts=base.posts,
        webhooks=base.webhooks,
        latencies=base.latencies,
        soak=base.soak if soak is None else soak,
        soak_rate=soak_rate or base.soak_rate,
        console_reviews=(console_reviews or base.console_reviews) if console else 0,
        console_requests=console_requests or base.console_requests,
        latency=latency,
        batch=Settings().consumer_max_records,
    )
    if profile:
        infra.profile_dir = infra.RUN / "profiles" / time.strftime("%Y%m%d-%H%M%S")
    stack = infra.Stack(
        kafka=infra.start_kafka(kafka_port), pg=infra.start_postgres(pg_port), kafka_port=kafka_port, pg_port=pg_port
    )
    log(f"kafka {stack.kafka}, postgres {stack.pg}")
    try:
        results = asyncio.run(run(plan, stack))
    finally:
        if not keep_running:
            infra.stop_kafka(kafka_port)
            infra.stop_postgres(pg_port)
    table = report(results)
    print(table)
    infra.RUN.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (infra.RUN / f"results-{stamp}.md").write_text(table)
    (infra.RUN / f"results-{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    log(f"written to .run/bench/results-{stamp}.md and .json")


async def run(plan: Plan, stack: infra.Stack) -> dict[str, Any]:
    run_id = time.strftime("r%H%M%S")
    kafka, pg = stack.kafka, stack.pg
    results: dict[str, Any] = {"machine": infra.machine(), "plan": plan.__dict__}
    results["postgres"] = await Database(pg).value("SELECT version()")

    # Throughput: ingest on a pre-filled topic, then the engine on what ingest published, then the notifier
    # on what the engine published; each service alone, on one database.
    prefix = f"bench-{run_id}."
    url = await infra.fresh_database(pg, f"bench_{run_id}")
    env = infra.smits_env(url, kafka, prefix)
    infra.prepare(env)
    db = Database(url)
    workload = build(plan.triggers, run=run_id)
    log(f"pre-filling {prefix}triggers with {len(workload.records):,} records")
    results["producer_rate"] = await raw.produce(kafka, prefix + "triggers", workload)
    batch = plan.batch
    results["raw_consume"] = await raw.consume(kafka, prefix + "triggers", len(workload.records), batch=batch)
    results["raw_copy"] = await raw.copy(url, workload, batch=batch)
    log(f"raw: consume {results['raw_consume']:,.0f}/s, COPY {results['raw_copy']:,.0f} rows/s")

    receiver = infra.Receiver(stages.free_port())
    try:
        body = orjson.dumps(_sample_webhook())
        # The notifier's limit is the best raw loop of either client at a few concurrencies, so that changing
        # clients cannot beat 100% of a slower loop (one httpx client slows down past ~10 in flight).
        loops = {}
        for client in raw.CLIENTS:
            for n in raw.CONCURRENCIES:
                await receiver.reset()
                loops[f"{client}:{n}"] = await raw.post_loop(
                    receiver.url + "/raw", body, plan.posts, concurrency=n, client=client
                )
                received = int((await receiver.stats())["count"])
                if received != plan.posts:
                    raise RuntimeError(f"{client} loop at {n} in flight: {plan.posts} POSTs sent, {received} received")
        results["raw_post_by_loop"] = loops
        results["raw_post_best"], results["raw_post"] = max(loops.items(), key=lambda item: item[1])
        log(f"raw: POST loops {', '.join(f'{k} {v:,.0f}/s' for k, v in loops.items())}")

        timeout = max(300.0, plan.triggers / 500)
        ingest = await stages.ingest(env, db, workload, timeout_s=timeout)
        log(f"ingest: {ingest.rate:,.0f} records/s")
        limit = await engine_limit.measure(kafka, prefix + "triggers.accepted", url, workload, batch=batch)
        results["raw_engine"] = limit.__dict__
        log(f"raw: engine-shaped {limit.rate:,.0f} triggers/s (writes alone {limit.write_rate:,.0f}/s)")
        engine = await stages.engine(env, db, workload.unique, timeout_s=timeout)
        log(f"engine: {engine.rate:,.0f} triggers/s, {engine.extra['events']:,} review events")
        env = infra.smits_env(await infra.fresh_database(pg, f"bench_{run_id}_notify"), kafka, f"bench-{run_id}-n.")
        infra.prepare(env)
        notifier = await stages.notifier(
            env, kafka, Database(env["SMITS_DATABASE_URL"]), receiver, events=plan.webhooks, timeout_s=timeout
        )
        log(f"notifier: {notifier.rate:,.0f} deliveries/s")
        results["stages"] = {s.name: _stage(s) for s in (ingest, engine, notifier)}
        _save(results, "partial")

        # Latency: all three services at once on fresh topics and database, at a steady rate.
        for rate, seconds in plan.latencies if plan.latency else ():
            prefix = f"bench-{run_id}-lat{rate}."
            url = await infra.fresh_database(pg, f"bench_{run_id}_lat{rate}")
            env = infra.smits_env(url, kafka, prefix)
            infra.prepare(env)
            latency = await stages.latency(
                env, stack, Database(url), receiver, rate=rate, seconds=seconds, run=f"{run_id}-{rate}", timeout_s=900
            )
            cpu = latency.extra["cpu_ms_per_trigger"]
            log(
                f"latency at {rate}/s: p50 {latency.extra['p50']:.0f} ms, p99 {latency.extra['p99']:.0f} ms; "
                f"CPU {cpu['total']:.2f} ms per trigger"
            )
            results["stages"][f"latency_{rate}"] = {**_stage(latency), "rate_per_s": rate, "for_s": seconds}
            _save(results, "partial")

        if plan.console_reviews:
            prefix = f"bench-{run_id}-console."
            url = await infra.fresh_database(pg, f"bench_{run_id}_console")
            env = infra.smits_env(url, kafka, prefix)
            infra.prepare(env)
            log(f"console: {plan.console_reviews:,} reviews, then every page {plan.console_requests} times")
            pages = await console_stage(
                env, kafka, Database(url), reviews=plan.console_reviews, requests=plan.console_requests
            )
            log(f"console: p50 {pages.extra['p50']:.0f} ms, p95 {pages.extra['p95']:.0f} ms over every page")
            results["stages"]["console"] = {**_stage(pages), **pages.extra}
            _save(results, "partial")

        if plan.soak:
            prefix = f"bench-{run_id}-soak."
            url = await infra.fresh_database(pg, f"bench_{run_id}_soak")
            env = infra.smits_env(url, kafka, prefix)
            infra.prepare(env)
            log(f"soak: {plan.soak:,} triggers at {plan.soak_rate:,}/s")
            soaked = await stages.soak(
                env,
                kafka,
                Database(url),
                receiver,
                total=plan.soak,
                rate=plan.soak_rate,
                run=run_id,
                timeout_s=max(600.0, plan.soak / 1000),
            )
            results["stages"]["soak"] = _stage(soaked)
            _save(results, "partial")
    finally:
        receiver.stop()
    return results


def _save(results: dict[str, Any], name: str) -> None:
    """What has been measured so far (a failure later in the run keeps it)."""
    infra.RUN.mkdir(parents=True, exist_ok=True)
    (infra.RUN / f"results-{name}.json").write_text(json.dumps(results, indent=2, default=str))


def _stage(result: StageResult) -> dict[str, Any]:
    return {
        "items": result.items,
        "seconds": result.seconds,
        "rate": result.rate,
        "peak_rss_mib": result.peak_rss_mib,
        **result.extra,
    }


def _sample_webhook() -> dict[str, Any]:
    """A `review.trigger_attached` body of the size smits sends."""
    return {
        "type": "review.trigger_attached",
        "timestamp": "2026-11-22T10:00:00+00:00",
        "data": {
            "review_id": "0b0f8a53-5d0e-4d55-b3b1-0d2c5e8a7f41",
            "trigger": {
                "source": "/bench",
                "id": "r101010-12345",
                "category": "regulation_update",
                "severity": "high",
                "subject": "bu-payments",
            },
        },
    }


def report(results: dict[str, Any]) -> str:
    s = results["stages"]
    consume, copy = results["raw_consume"], results["raw_copy"]
    limit = 1 / (1 / consume + 1 / copy)  # consume every record, then COPY it: the two in series
    post = results["raw_post"]
    raw_engine = results["raw_engine"]
    ingest, engine, notifier = s["ingest"], s["engine"], s["notifier"]

    def ratio(value: float, of: float) -> str:
        return f"{value / of:.0%}"

    lines = [
        f"Machine: {results['machine']}; {results['postgres'].split(',')[0]}",
        "",
        "| Figure | smits | Raw limit (same run) | Ratio | Target |",
        "|---|---|---|---|---|",
        f"| Ingest, {ingest['items']:,} records (5% dup, 1% invalid) | {ingest['rate']:,.0f}/s "
        f"| {limit:,.0f}/s (consume {consume:,.0f}/s + COPY {copy:,.0f}/s) | {ratio(ingest['rate'], limit)} "
        "| >= 15,000/s and >= 50% |",
        f"| Engine, {engine['items']:,} triggers.accepted ({engine['events']:,} review events) "
        f"| {engine['rate']:,.0f}/s | {raw_engine['rate']:,.0f}/s (engine-shaped: consume, and per "
        f"{results['plan']['batch']} one transaction of COPY of reviews opened, decisions, timeline and outbox rows "
        f"+ one UPDATE of the attached reviews; {raw_engine['reviews']:,} reviews, {raw_engine['updates']:,} "
        f"review updates; the writes alone {raw_engine['write_rate']:,.0f}/s) "
        f"| {ratio(engine['rate'], raw_engine['rate'])} | >= 8,000/s |",
        f"| Notifier, {notifier['items']:,} signed webhooks (five events per review, in order) "
        f"| {notifier['rate']:,.0f}/s "
        f"| {post:,.0f}/s (the best of the httpx and aiohttp POST loops at 1, 10 and 50 in flight to the same "
        f"receiver: {results['raw_post_best'].replace(':', ', ')} in flight) "
        f"| {ratio(notifier['rate'], post)} | >= 70% |",
        f"| Peak RSS under throughput load | ingest {ingest['peak_rss_mib']:.0f} MiB, engine "
        f"{engine['peak_rss_mib']:.0f} MiB, notifier {notifier['peak_rss_mib']:.0f} MiB | | | |",
    ]
    for name, latency in s.items():
        if name.startswith("latency_"):
            at = f"{latency['rate_per_s']:,}/s"
            lines.append(
                f"| End-to-end latency at {at} for {latency['for_s']:.0f} s ({latency['items']:,} webhooks; produced "
                f"at {latency['produced_per_s']:,.0f}/s) | p50 {latency['p50']:,.0f} ms, p95 {latency['p95']:,.0f} ms, "
                f"p99 {latency['p99']:,.0f} ms (max {latency['max']:,.0f} ms) | | | p99 <= 250 ms at 1,000/s |"
            )
            hops = "; ".join(
                f"{hop} {value['p50']:,.0f} / {value['p99']:,.0f} ms"
                for hop, value in latency["hops"].items()
                if hop != "missing"
            )
            missing = latency["hops"].get("missing")
            note = f" (not measured: {'; '.join(f'{k}: {v}' for k, v in missing.items())})" if missing else ""
            lines.append(f"| Per hop at {at}, p50 / p99 (stored timestamps) | {hops}{note} | | | |")
            cpu = latency["cpu_ms_per_trigger"]
            parts = ", ".join(f"{process} {cpu[process]:.2f}" for process in latency["cpu_counted"])
            lines.append(
                f"| CPU per trigger at {at} (/proc, first send to last webhook) | {cpu['total']:.2f} ms: {parts} "
                f"(the load generator {cpu.get('bench', 0.0):.2f}, not counted) | | | <= 1.0 ms |"
            )
    if "soak" in s:
        soak = s["soak"]
        samples = soak["samples"]
        marks = [samples[0], samples[len(samples) // 2], samples[-1]]
        cells = []
        for name in ("ingest", "engine", "notifier"):
            cells.append(f"{name} " + " → ".join(f"{mark[name] / 1024:.0f}" for mark in marks) + " MiB")
        lines.append(
            f"| Soak, {soak['items']:,} triggers in {soak['seconds']:.0f} s: RSS at start → middle → end "
            f"| {'; '.join(cells)} | | | flat |"
        )
    if "console" in s:
        pages = s["console"]
        slowest = max(pages["pages"].items(), key=lambda item: item[1]["p95"])
        lines.append(
            f"| Console pages over {pages['reviews']:,} reviews ({pages['items']:,} signed-in GETs) "
            f"| p50 {pages['p50']:,.0f} ms, p95 {pages['p95']:,.0f} ms (slowest: {slowest[0]} p95 "
            f"{slowest[1]['p95']:,.0f} ms) | | | p95 < 300 ms |"
        )
    lines.append("")
    rates = "; ".join(
        f"{name.replace(':', ', ')} in flight {value:,.0f}" for name, value in results["raw_post_by_loop"].items()
    )
    lines.append(f"Raw POST loops, requests/s: {rates}.")
    lines.append(f"Prefill producer: {results['producer_rate']:,.0f} records/s (not a smits figure).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app()
