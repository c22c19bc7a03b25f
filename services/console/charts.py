"""Bar charts as SVG geometry for the KPI page: labels and non-negative values in, the positions of bars and texts
out (the template draws them). Pure: no I/O, no markup.

Bars are horizontal, one row each, with the label on the left and the number written after the bar, so every
value is readable as text and not only as a length."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH = 640
"""The chart's width in SVG units (it scales to its box)."""
LABEL_WIDTH = 200
VALUE_WIDTH = 80
ROW_HEIGHT = 28
BAR_HEIGHT = 18
PADDING = 8
LABEL_CHARS = 28
"""Longer labels are cut in the chart (with `…`); the table beside it has them whole."""
PLOT_X = LABEL_WIDTH + PADDING
PLOT_WIDTH = WIDTH - PLOT_X - VALUE_WIDTH - PADDING
LABEL_KEYS = ("week", "category", "org_unit", "unit", "label", "name", "key")
"""Fields that name a row of a breakdown given as a list of objects, in order of preference."""


@dataclass(frozen=True, kw_only=True)
class ChartBar:
    label: str
    """The whole label (the bar's tooltip and the table's row)."""
    short_label: str
    value: float
    text: str
    """The value as written after the bar."""
    x: float
    y: float
    width: float
    height: float
    label_x: float
    value_x: float
    text_y: float


@dataclass(frozen=True, kw_only=True)
class BarChart:
    title: str
    description: str
    """One sentence with every label and value, for the SVG's `<desc>`."""
    width: int
    height: int
    bars: tuple[ChartBar, ...]
    unit: str


def number_text(value: float, unit: str = "") -> str:
    """`3` for whole numbers, `12.5` otherwise (one decimal), with the unit (`%` sticks to the number)."""
    shown = f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    if not unit:
        return shown
    return f"{shown}{unit}" if unit == "%" else f"{shown} {unit}"


def bar_chart(
    title: str, points: Sequence[tuple[str, float]], *, unit: str = "", maximum: float | None = None
) -> BarChart:
    """The chart of `points` (label, value), in their order. Values must be finite and non-negative. Bars are
    scaled to the largest value, or to `maximum` (e.g. 100 for percentages) when it is larger; all zeros give
    bars of no length."""
    for label, value in points:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{label!r}: a bar needs a finite, non-negative value, not {value!r}")
    top = max([value for _, value in points] + [maximum or 0.0])
    bars = []
    for index, (label, value) in enumerate(points):
        y = PADDING + index * ROW_HEIGHT
        width = PLOT_WIDTH * value / top if top > 0 else 0.0
        if value > 0:
            width = max(width, 1.0)  # a small value still shows
        bars.append(
            ChartBar(
                label=label,
                short_label=label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…",
                value=value,
                text=number_text(value, unit),
                x=PLOT_X,
                y=y + (ROW_HEIGHT - BAR_HEIGHT) / 2,
                width=round(width, 2),
                height=BAR_HEIGHT,
                label_x=LABEL_WIDTH,
                value_x=round(PLOT_X + width + PADDING / 2, 2),
                text_y=y + ROW_HEIGHT / 2,
            )
        )
    listed = "; ".join(f"{bar.label}: {bar.text}" for bar in bars) or "no values"
    return BarChart(
        title=title,
        description=f"{title}. {listed}.",
        width=WIDTH,
        height=2 * PADDING + max(1, len(bars)) * ROW_HEIGHT,
        bars=tuple(bars),
        unit=unit,
    )


def _value(raw: object) -> float | None:
    """A value a bar can show: a finite, non-negative number (not a boolean)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    value = float(raw)
    return value if math.isfinite(value) and value >= 0 else None


def _label(row: Mapping[str, object]) -> str | None:
    for key in LABEL_KEYS:
        if isinstance(row.get(key), str | int):
            return str(row[key])
    return None


def series(breakdown: object) -> dict[str, list[tuple[str, float]]]:
    """A KPI breakdown as named series of (label, value), whatever of three shapes it comes in:
    `{"label": n}` (one series, named ""), `{"label": {"field": n}}` or `[{"week": "2026-W47", "field": n}]`
    (one series per numeric field). What a bar cannot show (text, negative, missing) is left out."""
    rows: list[tuple[str, Mapping[str, object]]] = []
    found: dict[str, list[tuple[str, float]]] = {}
    if isinstance(breakdown, Mapping):
        for label, inner in breakdown.items():
            if isinstance(inner, Mapping):
                rows.append((str(label), inner))
            elif (value := _value(inner)) is not None:
                found.setdefault("", []).append((str(label), value))
    elif isinstance(breakdown, Sequence) and not isinstance(breakdown, str):
        for row in breakdown:
            if isinstance(row, Mapping) and (label := _label(row)) is not None:
                rows.append((label, row))
    for label, row in rows:
        for field, raw in row.items():
            if field not in LABEL_KEYS and (value := _value(raw)) is not None:
                found.setdefault(str(field), []).append((label, value))
    return found
