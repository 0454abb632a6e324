"""The budget burn-down of a key, user or team page: cumulative spend and the date the budget runs out."""

from __future__ import annotations

from llm_gateway.ui.pages import burn_down

DAY = 86_400_000
NOW = 1_767_225_600_000 + 20 * DAY + 3_600_000  # 2026-01-21 01:00 UTC


def test_the_budget_runs_out_at_the_last_seven_days_rate() -> None:
    start = NOW - NOW % DAY - 9 * DAY
    points = [(start + i * DAY, 10.0) for i in range(10)]  # $10 a day for 10 days
    out = burn_down(points, 160.0, 100.0, NOW, start)
    assert out["points"][0] == (start // 1000, 10.0) and out["points"][-1][1] == 100.0
    assert out["rate_per_day"] == 10.0
    assert out["runs_out"] == "2026-01-27"  # $60 left at $10 a day: six days from now


def test_spent_budgets_no_budget_and_no_spend() -> None:
    start = NOW - NOW % DAY - 2 * DAY
    assert burn_down([(start + DAY, 5.0)], 5.0, 5.0, NOW, start)["runs_out"] == "now"
    late = burn_down([(start + DAY, 5.0)], None, 5.0, NOW, start)
    assert late["runs_out"] is None and late["points"] == [(start // 1000, 0.0), ((start + DAY) // 1000, 5.0)]
    assert burn_down([], 10.0, 0.0, NOW, start) == {"points": [], "rate_per_day": 0.0, "runs_out": None}
