"""The KPI page's bar charts: geometry that stays inside the chart for any non-negative values (all zeros too),
lengths in the order of the values, every value written out; breakdowns of any of their shapes; words."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.console.charts import (
    LABEL_CHARS,
    PLOT_WIDTH,
    PLOT_X,
    WIDTH,
    bar_chart,
    number_text,
    series,
)
from services.console.pages.kpis import figures
from services.console.words import duration, period, reason

values = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False) | st.integers(0, 10**9)
points = st.lists(st.tuples(st.text(min_size=1, max_size=60), values), max_size=40)


@given(points)
def test_bars_stay_inside_the_chart_and_are_as_long_as_their_values_say(given_points: list[tuple[str, float]]) -> None:
    chart = bar_chart("Volume", given_points)
    assert len(chart.bars) == len(given_points)
    assert chart.width == WIDTH
    top = max((value for _, value in given_points), default=0)
    for bar, (label, value) in zip(chart.bars, given_points, strict=True):
        assert bar.label == label
        assert bar.value == value
        assert len(bar.short_label) <= LABEL_CHARS
        assert bar.x == PLOT_X
        assert 0 <= bar.width <= PLOT_WIDTH + 1e-6
        assert bar.y >= 0
        assert bar.y + bar.height <= chart.height
        assert bar.value_x <= WIDTH
        assert (bar.width == 0) == (value == 0)
        if value == top and top > 0:
            assert math.isclose(bar.width, PLOT_WIDTH, abs_tol=0.01)
        assert bar.text == number_text(value)
        assert f"{label}: {bar.text}" in chart.description
    ordered = sorted(chart.bars, key=lambda bar: bar.value)
    assert all(a.width <= b.width for a, b in pairwise(ordered))
    tops = [bar.y for bar in chart.bars]
    assert all(b - a >= chart.bars[0].height for a, b in pairwise(tops))  # rows never overlap


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=10))
def test_all_zeros_draw_no_bars_but_write_every_zero(labels: list[str]) -> None:
    chart = bar_chart("Nothing yet", [(label, 0) for label in labels])
    assert [bar.width for bar in chart.bars] == [0.0] * len(labels)
    assert [bar.text for bar in chart.bars] == ["0"] * len(labels)


def test_percentages_are_scaled_to_a_hundred_and_keep_their_unit() -> None:
    chart = bar_chart("Rates", [("holders", 50.0), ("rework", 12.25)], unit="%", maximum=100)
    assert math.isclose(chart.bars[0].width, PLOT_WIDTH / 2, abs_tol=0.01)
    assert [bar.text for bar in chart.bars] == ["50%", "12.2%"]
    assert chart.description == "Rates. holders: 50%; rework: 12.2%."
    assert bar_chart("Empty", []).description == "Empty. no values."


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_value_no_bar_can_show_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        bar_chart("Bad", [("x", bad)])


def test_breakdowns_of_every_shape_become_named_series() -> None:
    assert series({"budget_change": 3, "goal_change": 0}) == {"": [("budget_change", 3.0), ("goal_change", 0.0)]}
    assert series({"finance": {"opened": 2, "overdue": 1, "name": "x"}, "ops": {"opened": 4}}) == {
        "opened": [("finance", 2.0), ("ops", 4.0)],
        "overdue": [("finance", 1.0)],
    }
    trend = [
        {"week": "2026-W46", "opened": 1, "closed": 0, "avg_s": None},
        {"week": "2026-W47", "opened": 3, "closed": 2, "avg_s": 7200.0},
        {"opened": 9},  # no label: left out
    ]
    assert series(trend) == {
        "opened": [("2026-W46", 1.0), ("2026-W47", 3.0)],
        "closed": [("2026-W46", 0.0), ("2026-W47", 2.0)],
        "avg_s": [("2026-W47", 7200.0)],
    }
    assert series({"x": -1, "y": True, "z": "many"}) == {}
    assert series("text") == series(None) == series(7) == {}


def test_durations_periods_and_reasons_in_words() -> None:
    assert duration(None) == "no data yet"
    assert duration(0) == "0 seconds"
    assert duration(0.2) == "under a second"
    assert duration(61) == "1 minute 1 second"
    assert duration(93784) == "1 day 2 hours"
    assert duration(86405) == "1 day"
    assert period("P30D") == "30 days"
    assert period("PT12H") == "12 hours"
    assert period("P1DT2H") == "1 day 2 hours"
    assert period("P2W") == "14 days"
    assert period("soon") == "soon"
    assert reason("UnknownType") == "unknown type"
    assert reason("smits.InvalidJson") == "invalid JSON"
    assert reason("UnsupportedDataContentType") == "unsupported data content type"


TODAY = {
    "trigger_to_review_opened_s": 12.5,
    "opened_to_assessment_complete_s": None,
    "trigger_to_strategy_published_s": None,
    "overdue_reviews": 1,
    "overdue_acknowledgements": 0,
    "current_copy_holders_pct": 50.0,
    "org_units_with_current_tactical_plan_pct": None,
    "approval_rework_rate_pct": None,
    "trigger_volume_by_category": {"budget_change": 2, "goal_change": 5},
    "triggers_by_outcome": {"opened": 3, "attached": 4, "recorded": 0},
    "attach_ratio_pct": 57.1,
    "merged_reviews": 0,
}


def test_the_kpis_of_today_become_three_figures_and_breakdowns_added_later_are_drawn_too() -> None:
    today = figures(TODAY)
    assert [f.key for f in today] == ["volume", "outcomes", "rates"]
    volume = today[0]
    assert volume.rows == [("budget change", ["2"]), ("goal change", ["5"])]
    assert [bar.text for bar in volume.charts[0].bars] == ["2", "5"]
    assert today[2].rows == [("current copy holders", ["50%"]), ("triggers attached", ["57.1%"])]
    later = {
        **TODAY,
        "trend": [
            {"week": "2026-W46", "opened": 2, "closed": 1, "avg_lead_time_s": 7200},
            {"week": "2026-W47", "opened": 0, "closed": 0, "avg_lead_time_s": None},
        ],
        "by_category": {"budget_change": {"opened": 2, "overdue": 1}},
        "by_org_unit": [{"org_unit": "finance", "open": 3}],
    }
    trend, by_category, by_unit = figures(later)[3:]
    assert trend.columns == ["opened", "closed", "avg lead time"]
    assert trend.rows == [("2026-W46", ["2", "1", "2 h"]), ("2026-W47", ["0", "0", "—"])]
    assert by_category.rows == [("budget change", ["2", "1"])]
    assert by_unit.rows == [("finance", ["3"])]
    assert figures({})[0].rows == []  # nothing yet: the page says so
