"""`python -m bench [--quick] [--runs N] [--scale-out]`: raw limits and smits figures, printed as a Markdown table.

Starts its own Kafka broker and PostgreSQL cluster (ports 29392/29393 and 25435, below the ephemeral range),
runs every stage on fresh topics (a per-run prefix) and fresh databases, and writes the table and the raw
numbers to `.run/bench/`. With `--runs N` the throughput and latency stages, each with the raw limits it is
compared against, are repeated N times and medians reported. Timings are reported, never asserted; counts are
checked exactly, so a stage that loses or duplicates anything fails the run.
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
from bench.report import report
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
    runs: int = 1
    scale_out: bool = False
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
    latencies=((500, 2),),  # 1,000 webhooks: enough to see every hop, short enough for CI
    soak=10_000,
    soak_rate=1000,
    console_reviews=1_000,
    console_requests=5,
)

app = typer.Typer(add_completion=False)


@app.command()
def main(
    quick: Annotated[bool, typer.Option(help="small sizes (a few minutes), to catch a collapse")] = False,
    triggers: Annotated[int | None, typer.Option(help="records pre-produced for ingest")] = None,
    runs: Annotated[int, typer.Option(min=1, help="repeat the throughput and latency stages; medians reported")] = 1,
    scale_out: Annotated[
        bool, typer.Option(help="also measure two ingest, then two engine processes on the 3 partitions (once)")
    ] = False,
    soak: Annotated[int | None, typer.Option(help="triggers in the soak (0 skips it)")] = None,
    soak_rate: Annotated[int | None, typer.Option(help="soak production rate per second")] = None,
    keep_running: Annotated[bool, typer.Option(help="leave Kafka, Postgres and the runs' databases")] = False,
    latency: Annotated[bool, typer.Option(help="run the end-to-end latency stage")] = True,
    latency_rate: Annotated[int | None, typer.Option(help="triggers per second of the latency stage")] = None,
    latency_seconds: Annotated[float | None, typer.Option(help="how long the latency stage produces")] = None,
    console: Annotated[bool, typer.Option(help="run the console stage (pages over 10,000 reviews)")] = True,
    console_reviews: Annotated[int | None, typer.Option(help="reviews in the console stage's database")] = None,
    console_requests: Annotated[int | None, typer.Option(help="timed GETs of each console page")] = None,
    profile: Annotated[bool, typer.Option(help="py-spy profiles of every service into .run/bench/profiles")] = False,
    kafka_port: Annotated[int, typer.Option(help="the bench's own Kafka broker (and the next port)")] = KAFKA_PORT,
    pg_port: Annotated[int, typer.Option(help="port of the bench's own PostgreSQL cluster")] = PG_PORT,
) -> None:
    base = QUICK if quick else FULL
    (base_rate, base_seconds), *_ = base.latencies
    plan = Plan(
        triggers=triggers or base.triggers,
        posts=base.posts,
        webhooks=base.webhooks,
        latencies=((latency_rate or base_rate, latency_seconds or base_seconds),),
        soak=base.soak if soak is None else soak,
        soak_rate=soak_rate or base.soak_rate,
        console_reviews=(console_reviews or base.console_reviews) if console else 0,
        console_requests=console_requests or base.console_requests,
        latency=latency,
        runs=runs,
        scale_out=scale_out,
        batch=Settings().consumer_max_records,
    )
    if profile:
        infra.profile_dir = infra.RUN / "profiles" / time.strftime("%Y%m%d-%H%M%S")
    stack = infra.Stack(
        kafka=infra.start_kafka(kafka_port), pg=infra.start_postgres(pg_port), kafka_port=kafka_port, pg_port=pg_port
    )
    log(f"kafka {stack.kafka}, postgres {stack.pg}")
    try:
        results = asyncio.run(run(plan, stack, keep=keep_running))
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


async def run(plan: Plan, stack: infra.Stack, *, keep: bool) -> dict[str, Any]:
    run_id = time.strftime("r%H%M%S")
    results: dict[str, Any] = {"machine": infra.machine(), "plan": plan.__dict__, "runs": [], "once": {}}
    results["postgres"] = await Database(stack.pg).value("SELECT version()")
    receiver = infra.Receiver(stages.free_port())
    try:
        for number in range(1, plan.runs + 1):
            name = run_id if plan.runs == 1 else f"{run_id}n{number}"
            log(f"run {number} of {plan.runs}" if plan.runs > 1 else f"run {name}")
            results["runs"].append(await one_run(plan, stack, receiver, name=name, results=results, keep=keep))
            _save(results, "partial")
        if plan.scale_out:
            results["scale_out"] = await scale_out(plan, stack, name=f"{run_id}s", keep=keep)
            _save(results, "partial")
        await once(plan, stack, receiver, run_id=run_id, results=results, keep=keep)
    finally:
        receiver.stop()
    return results


async def one_run(
    plan: Plan, stack: infra.Stack, receiver: infra.Receiver, *, name: str, results: dict[str, Any], keep: bool
) -> dict[str, Any]:
    """Raw limits and the three services' throughput, each service alone on one database (ingest on a pre-filled
    topic, the engine on what ingest published, the notifier on pre-produced review events), then the latency
    stage; every raw limit is measured in the same run as the figure it is the denominator of."""
    one: dict[str, Any] = {"name": name, "stages": {}}
    results["runs_in_progress"] = one
    batch = plan.batch
    prefix = f"bench-{name}."
    databases = [f"bench_{name}", f"bench_{name}_notify"]
    url = await infra.fresh_database(stack.pg, databases[0])
    env = infra.smits_env(url, stack.kafka, prefix)
    infra.prepare(env)
    db = Database(url)
    workload = build(plan.triggers, run=name)
    log(f"pre-filling {prefix}triggers with {len(workload.records):,} records")
    one["producer_rate"] = await raw.produce(stack.kafka, prefix + "triggers", workload)
    one["raw_consume"] = await raw.consume(stack.kafka, prefix + "triggers", len(workload.records), batch=batch)
    one["raw_copy"] = await raw.copy(url, workload, batch=batch)
    log(f"raw: consume {one['raw_consume']:,.0f}/s, COPY {one['raw_copy']:,.0f} rows/s")

    body = orjson.dumps(_sample_webhook())
    # The notifier's limit is the best raw loop of either client at a few concurrencies, so that changing clients
    # cannot beat 100% of a slower loop (one httpx client slows down past ~10 in flight).
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
    one["raw_post_by_loop"] = loops
    one["raw_post_best"], one["raw_post"] = max(loops.items(), key=lambda item: item[1])
    log(f"raw: POST loops {', '.join(f'{k} {v:,.0f}/s' for k, v in loops.items())}")

    timeout = max(300.0, plan.triggers / 500)
    ingest = await stages.ingest(env, db, workload, timeout_s=timeout, tag=f"{name}-throughput")
    log(f"ingest: {ingest.rate:,.0f} records/s, {_cpu_ms(ingest):.2f} ms of its CPU per record (start-up included)")
    limit = await engine_limit.measure(stack.kafka, prefix + "triggers.accepted", url, workload, batch=batch)
    one["raw_engine"] = limit.__dict__
    log(f"raw: engine-shaped {limit.rate:,.0f} triggers/s (writes alone {limit.write_rate:,.0f}/s)")
    engine = await stages.engine(env, db, workload.unique, timeout_s=timeout, tag=f"{name}-throughput")
    log(
        f"engine: {engine.rate:,.0f} triggers/s, {engine.extra['events']:,} review events, "
        f"{_cpu_ms(engine):.2f} ms of its CPU per trigger (start-up included)"
    )
    env = infra.smits_env(await infra.fresh_database(stack.pg, databases[1]), stack.kafka, f"bench-{name}-n.")
    infra.prepare(env)
    notifier = await stages.notifier(
        env,
        stack.kafka,
        Database(env["SMITS_DATABASE_URL"]),
        receiver,
        events=plan.webhooks,
        timeout_s=timeout,
        tag=f"{name}-throughput",
    )
    log(f"notifier: {notifier.rate:,.0f} deliveries/s, {_cpu_ms(notifier):.2f} ms CPU per webhook (with start-up)")
    one["stages"] = {s.name: _stage(s) for s in (ingest, engine, notifier)}
    _save(results, "partial")

    # Latency: all three services at once on fresh topics and database, at a steady rate.
    for rate, seconds in plan.latencies if plan.latency else ():
        prefix = f"bench-{name}-lat{rate}."
        databases.append(f"bench_{name}_lat{rate}")
        url = await infra.fresh_database(stack.pg, databases[-1])
        env = infra.smits_env(url, stack.kafka, prefix)
        infra.prepare(env)
        latency = await stages.latency(
            env,
            stack,
            Database(url),
            receiver,
            rate=rate,
            seconds=seconds,
            run=f"{name}-{rate}",
            timeout_s=900,
            tag=f"{name}-latency",
        )
        cpu = latency.extra["cpu_ms_per_trigger"]
        log(
            f"latency at {rate}/s: p50 {latency.extra['p50']:.0f} ms, p99 {latency.extra['p99']:.0f} ms; "
            f"CPU {cpu['total']:.2f} ms per trigger"
        )
        one["stages"][f"latency_{rate}"] = {**_stage(latency), "rate_per_s": rate, "for_s": seconds}
    del results["runs_in_progress"]
    if not keep:
        for database in databases:
            await infra.drop_database(stack.pg, database)
    return one


async def scale_out(plan: Plan, stack: infra.Stack, *, name: str, keep: bool) -> dict[str, Any]:
    """Two ingest processes on a pre-filled topic, then two engine processes on what they published: one consumer
    group each, so Kafka shares the 3 partitions out between them (measured once)."""
    prefix = f"bench-{name}."
    database = f"bench_{name}"
    url = await infra.fresh_database(stack.pg, database)
    env = infra.smits_env(url, stack.kafka, prefix)
    infra.prepare(env)
    db = Database(url)
    workload = build(plan.triggers, run=name)
    log(f"scale-out: pre-filling {prefix}triggers with {len(workload.records):,} records")
    await raw.produce(stack.kafka, prefix + "triggers", workload)
    timeout = max(300.0, plan.triggers / 500)
    ingest = await stages.ingest(env, db, workload, timeout_s=timeout, processes=2, tag=f"{name}-scaleout")
    log(f"scale-out: two ingest processes {ingest.rate:,.0f} records/s")
    engine = await stages.engine(env, db, workload.unique, timeout_s=timeout, processes=2, tag=f"{name}-scaleout")
    log(f"scale-out: two engine processes {engine.rate:,.0f} triggers/s")
    if not keep:
        await infra.drop_database(stack.pg, database)
    return {"processes": 2, "partitions": 3, "ingest": _stage(ingest), "engine": _stage(engine)}


async def once(
    plan: Plan, stack: infra.Stack, receiver: infra.Receiver, *, run_id: str, results: dict[str, Any], keep: bool
) -> None:
    """The console and the soak, measured once whatever `--runs` says."""
    if plan.console_reviews:
        prefix = f"bench-{run_id}-console."
        url = await infra.fresh_database(stack.pg, f"bench_{run_id}_console")
        env = infra.smits_env(url, stack.kafka, prefix)
        infra.prepare(env)
        log(f"console: {plan.console_reviews:,} reviews, then every page {plan.console_requests} times")
        pages = await console_stage(
            env, stack.kafka, Database(url), reviews=plan.console_reviews, requests=plan.console_requests
        )
        log(f"console: p50 {pages.extra['p50']:.0f} ms, p95 {pages.extra['p95']:.0f} ms over every page")
        results["once"]["console"] = {**_stage(pages), **pages.extra}
        _save(results, "partial")
        if not keep:
            await infra.drop_database(stack.pg, f"bench_{run_id}_console")

    if plan.soak:
        prefix = f"bench-{run_id}-soak."
        url = await infra.fresh_database(stack.pg, f"bench_{run_id}_soak")
        env = infra.smits_env(url, stack.kafka, prefix)
        infra.prepare(env)
        log(f"soak: {plan.soak:,} triggers at {plan.soak_rate:,}/s")
        soaked = await stages.soak(
            env,
            stack.kafka,
            Database(url),
            receiver,
            total=plan.soak,
            rate=plan.soak_rate,
            run=run_id,
            timeout_s=max(600.0, plan.soak / 1000),
        )
        results["once"]["soak"] = _stage(soaked)
        _save(results, "partial")
        if not keep:
            await infra.drop_database(stack.pg, f"bench_{run_id}_soak")


def _cpu_ms(result: StageResult) -> float:
    """The service processes' CPU per item, in milliseconds: robust to a busy machine, unlike the rate."""
    return float(result.extra["cpu_s"]) * 1000 / result.items


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


if __name__ == "__main__":
    app()
