"""The Markdown table of a bench run: each figure beside its raw limit from the same run, the ratio, the target.

With several runs (`--runs N`) a figure is the median over the runs with its range (lowest to highest) in
brackets, and a ratio is the median of the per-run ratios (each run's figure over that run's own limit)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

TARGETS = {
    "ingest": ">= 40% and >= 20,000/s",
    "engine": ">= 30% and >= 6,000/s",
    "notifier": ">= 50% and >= 1,500/s",
    "latency": "p99 <= 250 ms and p50 <= 80 ms at 500/s",
    "cpu": "<= 1.0 ms",
    "soak": "flat",
    "console": "p95 < 300 ms",
}
"""Issue #17's targets (median of 3 runs on the 2-core machine)."""

PROCESSES = {"postgres": "Postgres", "kafka": "Kafka"}


def ingest_limit(run: dict[str, Any]) -> float:
    """Consume every record, then COPY it: the two measured apart, in series."""
    consume, copy = float(run["raw_consume"]), float(run["raw_copy"])
    return 1 / (1 / consume + 1 / copy)


def _spread(values: Sequence[float], show: Callable[[float], str]) -> str:
    middle = show(statistics.median(values))
    if len(values) < 2:
        return middle
    return f"{middle} ({show(min(values))} to {show(max(values))})"


def rate(values: Sequence[float], unit: str = "/s") -> str:
    return _spread(values, lambda value: f"{value:,.0f}{unit}")


def ms(values: Sequence[float]) -> str:
    return _spread(values, lambda value: f"{value:,.0f} ms")


def share(values: Sequence[float]) -> str:
    return _spread(values, lambda value: f"{value:.0%}" if value >= 0.1 else f"{value:.1%}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _loop_name(name: str) -> str:
    client, concurrency = name.split(":")
    return f"{client}, {concurrency} in flight"


def report(results: dict[str, Any]) -> str:
    runs: list[dict[str, Any]] = results["runs"]
    stages = [run["stages"] for run in runs]

    def figure(stage: str, key: str = "rate") -> list[float]:
        return [float(s[stage][key]) for s in stages]

    ingest_limits = [ingest_limit(run) for run in runs]
    engine_limits = [float(run["raw_engine"]["rate"]) for run in runs]
    post_limits = [float(run["raw_post"]) for run in runs]
    ingest, engine, notifier = figure("ingest"), figure("engine"), figure("notifier")
    first = stages[0]
    best = Counter(run["raw_post_best"] for run in runs)
    best_text = "; ".join(
        _loop_name(name) + (f" in {count} of {len(runs)} runs" if len(runs) > 1 else "")
        for name, count in best.most_common()
    )
    raw_engine = runs[0]["raw_engine"]
    lines = [
        f"Machine: {results['machine']}; {results['postgres'].split(',')[0]}",
        "",
        f"Runs: {len(runs)}"
        + (
            "; each figure is the median with the range over the runs in brackets, each ratio the median of the "
            "per-run ratios (a run's figure over the limit measured in that run)."
            if len(runs) > 1
            else "."
        ),
        "",
        "| Figure | smits | Raw limit (same run) | Ratio | Target |",
        "|---|---|---|---|---|",
        f"| Ingest, {first['ingest']['items']:,} records (5% dup, 1% invalid) | {rate(ingest)} "
        f"| {rate(ingest_limits)} (consume {median([run['raw_consume'] for run in runs]):,.0f}/s + COPY "
        f"{median([run['raw_copy'] for run in runs]):,.0f}/s) "
        f"| {share([a / b for a, b in zip(ingest, ingest_limits, strict=True)])} | {TARGETS['ingest']} |",
        f"| Engine, {first['engine']['items']:,} triggers.accepted ({first['engine']['events']:,} review events) "
        f"| {rate(engine)} | {rate(engine_limits)} (engine-shaped: consume, and per "
        f"{results['plan']['batch']} one transaction of COPY of reviews opened, decisions, timeline and outbox rows "
        f"+ one UPDATE of the attached reviews; {raw_engine['reviews']:,} reviews, {raw_engine['updates']:,} "
        f"review updates; the writes alone {median([run['raw_engine']['write_rate'] for run in runs]):,.0f}/s) "
        f"| {share([a / b for a, b in zip(engine, engine_limits, strict=True)])} | {TARGETS['engine']} |",
        f"| Notifier, {first['notifier']['items']:,} signed webhooks (five events per review, in order) "
        f"| {rate(notifier)} | {rate(post_limits)} (the best POST loop to the same receiver: {best_text}) "
        f"| {share([a / b for a, b in zip(notifier, post_limits, strict=True)])} | {TARGETS['notifier']} |",
        f"| Peak RSS under throughput load | ingest {median(figure('ingest', 'peak_rss_mib')):.0f} MiB, engine "
        f"{median(figure('engine', 'peak_rss_mib')):.0f} MiB, notifier "
        f"{median(figure('notifier', 'peak_rss_mib')):.0f} MiB | | | |",
    ]
    lines += _latency_rows(stages)
    if "scale_out" in results:
        lines.append(_scale_out_row(results["scale_out"], ingest=median(ingest), engine=median(engine)))
    lines += _once_rows(results.get("once", {}))
    lines.append("")
    loops = {name: median([run["raw_post_by_loop"][name] for run in runs]) for name in runs[0]["raw_post_by_loop"]}
    rates = "; ".join(f"{_loop_name(name)} {value:,.0f}" for name, value in loops.items())
    lines.append(f"Raw POST loops, requests/s{' (median of the runs)' if len(runs) > 1 else ''}: {rates}.")
    producer = median([run["producer_rate"] for run in runs])
    lines.append(f"Prefill producer: {producer:,.0f} records/s (not a smits figure).")
    return "\n".join(lines) + "\n"


def _latency_rows(stages: list[dict[str, Any]]) -> list[str]:
    lines = []
    names = [name for name in stages[0] if name.startswith("latency_")]
    for name in names:
        runs = [s[name] for s in stages if name in s]
        one = runs[0]
        at = f"{one['rate_per_s']:,}/s"
        target = TARGETS["latency"] if one["rate_per_s"] == 500 else ""
        lines.append(
            f"| End-to-end latency at {at} for {one['for_s']:.0f} s ({one['items']:,} webhooks; produced at "
            f"{median([r['produced_per_s'] for r in runs]):,.0f}/s) "
            f"| p50 {ms([r['p50'] for r in runs])}, p95 {ms([r['p95'] for r in runs])}, "
            f"p99 {ms([r['p99'] for r in runs])} (max {max(r['max'] for r in runs):,.0f} ms) | | | {target} |"
        )
        hop_names = [hop for hop in one["hops"] if hop != "missing"]
        if hop_names:
            cells = "; ".join(
                f"{hop} {median([r['hops'][hop]['p50'] for r in runs]):,.0f} / "
                f"{median([r['hops'][hop]['p99'] for r in runs]):,.0f} ms"
                for hop in hop_names
            )
            missing = one["hops"].get("missing")
            note = f" (not measured: {'; '.join(f'{k}: {v}' for k, v in missing.items())})" if missing else ""
            lines.append(f"| Per hop at {at}, p50 / p99 (stored timestamps) | {cells}{note} | | | |")
        counted: list[str] = one["cpu_counted"]
        per = {process: median([r["cpu_ms_per_trigger"][process] for r in runs]) for process in [*counted, "total"]}
        producer = median([r["cpu_ms_per_trigger"].get("bench", 0.0) for r in runs])
        parts = ", ".join(f"{PROCESSES.get(process, process)} {per[process]:.2f}" for process in counted)
        lines.append(
            f"| CPU per trigger at {at} (/proc, first send to last webhook) "
            f"| {ms_fine([r['cpu_ms_per_trigger']['total'] for r in runs])}: {parts} "
            f"(the load generator {producer:.2f}, not counted) | | | {TARGETS['cpu'] if target else ''} |"
        )
    return lines


def ms_fine(values: Sequence[float]) -> str:
    return _spread(values, lambda value: f"{value:.2f} ms")


def _scale_out_row(scale: dict[str, Any], *, ingest: float, engine: float) -> str:
    return (
        f"| Scale-out: two ingest, then two engine processes on 3 partitions ({scale['ingest']['items']:,} records) "
        f"| ingest {scale['ingest']['rate']:,.0f}/s, engine {scale['engine']['rate']:,.0f}/s "
        f"| one process each (above): ingest {ingest:,.0f}/s, engine {engine:,.0f}/s "
        f"| ingest x{scale['ingest']['rate'] / ingest:.2f}, engine x{scale['engine']['rate'] / engine:.2f} | |"
    )


def _once_rows(once: dict[str, Any]) -> list[str]:
    lines = []
    if "soak" in once:
        soak = once["soak"]
        samples = soak["samples"]
        marks = [samples[0], samples[len(samples) // 2], samples[-1]]
        cells = []
        for name in ("ingest", "engine", "notifier"):
            cells.append(f"{name} " + " → ".join(f"{mark[name] / 1024:.0f}" for mark in marks) + " MiB")
        lines.append(
            f"| Soak, {soak['items']:,} triggers in {soak['seconds']:.0f} s: RSS at start → middle → end "
            f"| {'; '.join(cells)} | | | {TARGETS['soak']} |"
        )
    if "console" in once:
        pages = once["console"]
        slowest = max(pages["pages"].items(), key=lambda item: item[1]["p95"])
        lines.append(
            f"| Console pages over {pages['reviews']:,} reviews ({pages['items']:,} signed-in GETs) "
            f"| p50 {pages['p50']:,.0f} ms, p95 {pages['p95']:,.0f} ms (slowest: {slowest[0]} p95 "
            f"{slowest[1]['p95']:,.0f} ms) | | | {TARGETS['console']} |"
        )
    return lines
