"""KPIs: the numbers of `/v1/kpis` in words, and their breakdowns as server-drawn SVG bar charts, each with the
same numbers in a table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.console import words
from services.console.charts import BarChart, bar_chart, number_text, series
from services.console.web import ConsoleRoute, Viewing

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

LEAD_TIMES = {
    "trigger_to_review_opened_s": "Trigger to review opened",
    "opened_to_assessment_complete_s": "Review opened to assessment complete",
    "trigger_to_strategy_published_s": "Trigger to strategy published",
}
RATES = {
    "current_copy_holders_pct": ("Required recipients holding the current copy", "current copy holders"),
    "org_units_with_current_tactical_plan_pct": ("Org units with a current tactical plan", "units with tactical plan"),
    "approval_rework_rate_pct": ("Approvals sent back for rework", "approvals reworked"),
    "attach_ratio_pct": ("Triggers attached to an open review (of those opening or attaching)", "triggers attached"),
}
"""Percentages: what they mean, and their label in the chart."""
COUNTS = {
    "overdue_reviews": "Overdue reviews",
    "overdue_acknowledgements": "Overdue acknowledgements",
    "merged_reviews": "Merged reviews",
}
BREAKDOWNS = {
    "trend": ("Trend per ISO week", "week"),
    "by_category": ("By trigger category", "category"),
    "by_org_unit": ("By org unit", "org unit"),
}
"""Breakdowns `/v1/kpis` may add: drawn when present, whatever their fields."""


@dataclass(frozen=True, kw_only=True)
class KpiFigure:
    """One section of charts: a chart per series and one table with every series as a column."""

    key: str
    heading: str
    row_heading: str
    charts: list[BarChart]
    columns: list[str]
    rows: list[tuple[str, list[str]]]


def _scaled(name: str, points: list[tuple[str, float]]) -> tuple[str, list[tuple[str, float]], str, float | None]:
    """A series' title, points, unit and scale: seconds as hours, percentages on 0 to 100."""
    if name.endswith("_s"):
        return name.removesuffix("_s").replace("_", " "), [(k, v / 3600) for k, v in points], "h", None
    if name.endswith("_pct"):
        return name.removesuffix("_pct").replace("_", " "), points, "%", 100.0
    return name.replace("_", " "), points, "", None


def figure(key: str, heading: str, row_heading: str, breakdown: object, *, default: str = "count") -> KpiFigure:
    charts: list[BarChart] = []
    labels: list[str] = []
    values: dict[str, dict[str, str]] = {}
    for name, found in series(breakdown).items():
        points = [(label.replace("_", " "), value) for label, value in found]
        title, scaled, unit, maximum = _scaled(name or default, points)
        chart = bar_chart(f"{heading}: {title}", scaled, unit=unit, maximum=maximum)
        charts.append(chart)
        values[chart.title] = {bar.label: bar.text for bar in chart.bars}
        labels.extend(label for label, _ in points if label not in labels)
    columns = [chart.title.removeprefix(f"{heading}: ") for chart in charts]
    rows = [(label, [values[chart.title].get(label, "—") for chart in charts]) for label in labels]
    return KpiFigure(key=key, heading=heading, row_heading=row_heading, charts=charts, columns=columns, rows=rows)


def figures(kpis: Mapping[str, Any]) -> list[KpiFigure]:
    found = [
        figure(
            "volume",
            "Trigger volume by category",
            "category",
            kpis.get("trigger_volume_by_category") or {},
            default="triggers",
        ),
        figure(
            "outcomes", "Triggers by decision", "decision", kpis.get("triggers_by_outcome") or {}, default="triggers"
        ),
        figure(
            "rates",
            "Rates",
            "rate",
            {short: value for key, (_, short) in RATES.items() if (value := kpis.get(key)) is not None},
            default="percent_pct",
        ),
    ]
    for key, (heading, row_heading) in BREAKDOWNS.items():
        if kpis.get(key) is not None:
            found.append(figure(key, heading, row_heading, kpis[key]))
    return found


@router.get("/kpis")
async def kpis(page: Viewing) -> HTMLResponse:
    values: dict[str, Any] = await page.api.get("/v1/kpis")
    return page.render(
        "kpis.html",
        lead_times=[(text, words.duration(values.get(key))) for key, text in LEAD_TIMES.items()],
        counts=[(text, values.get(key)) for key, text in COUNTS.items() if key in values],
        rates=[
            (text, number_text(values[key], "%") if values.get(key) is not None else "no data yet")
            for key, (text, _) in RATES.items()
        ],
        figures=figures(values),
    )
