"""Budget gate v1 and cost accounting.

AWS Budgets cannot stop a SageMaker job and Cost Explorer lags by hours, so the gate counts what it
knows: spend recorded on this month's finished runs + the worst case of every run in flight + this
run's worst case, against the monthly budget.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel

from yoloops_core.config import Settings
from yoloops_core.models import iso, utcnow
from yoloops_core.pricing import hourly_price


class RunLister(Protocol):
    def list_runs_by_month(self, month: str) -> list[dict[str, Any]]: ...
    def list_in_flight(self, month: str) -> list[dict[str, Any]]: ...


class BudgetDecision(BaseModel):
    admitted: bool
    month: str
    budget_usd: float
    spent_usd: float
    in_flight_usd: float
    in_flight_runs: int
    worst_case_usd: float
    remaining_usd: float  # budget - spent - in flight (before this run)
    hourly_price_usd: float
    instance_type: str
    instance_count: int
    max_runtime_seconds: int


class BudgetSummary(BaseModel):
    month: str
    budget_usd: float
    spent_usd: float
    in_flight_usd: float
    in_flight_runs: int
    remaining_usd: float


def worst_case_cost(instance_type: str, instance_count: int, max_runtime_seconds: int,
                    override_usd: float | None = None) -> float:
    """Hourly price x max runtime hours x instance count."""
    return hourly_price(instance_type, override_usd) * max_runtime_seconds / 3600.0 * instance_count


def job_cost(billable_seconds: float, instance_type: str, instance_count: int,
             override_usd: float | None = None) -> float:
    """Cost of billed training time (spot savings are already in BillableTimeInSeconds)."""
    return billable_seconds * hourly_price(instance_type, override_usd) / 3600.0 * instance_count


def billable_seconds(description: dict[str, Any] | None) -> float:
    """BillableTimeInSeconds of a DescribeTrainingJob output (TrainingTimeInSeconds when absent)."""
    if not isinstance(description, dict):
        return 0.0
    for key in ("BillableTimeInSeconds", "TrainingTimeInSeconds"):
        value = description.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


def _month(now: datetime | None) -> str:
    return iso(now or utcnow())[:7]


def _spent(store: RunLister, month: str) -> float:
    return sum(float(r.get("cost_usd") or 0.0) for r in store.list_runs_by_month(month))


def _in_flight(store: RunLister, month: str, exclude_run: str | None) -> tuple[float, int]:
    runs = [r for r in store.list_in_flight(month) if r.get("run_id") != exclude_run]
    return sum(float(r.get("worst_case_cost_usd") or 0.0) for r in runs), len(runs)


def decide(run_id: str, settings: Settings, store: RunLister, now: datetime | None = None) -> BudgetDecision:
    """Admit the run iff spent + in-flight worst cases (other runs) + this worst case <= budget.

    Spend counts runs *started* this month (the GSI is keyed by start month); a run in flight from
    last month is counted by its worst case until it finishes.
    """
    month = _month(now)
    price = hourly_price(settings.instance_type, settings.hourly_price_override_usd)
    worst = worst_case_cost(settings.instance_type, settings.instance_count,
                            settings.max_runtime_seconds, settings.hourly_price_override_usd)
    spent = _spent(store, month)
    in_flight, count = _in_flight(store, month, exclude_run=run_id)
    # A tiny epsilon so a budget that fits exactly is not refused by float rounding.
    admitted = spent + in_flight + worst <= settings.monthly_budget_usd + 1e-9
    return BudgetDecision(
        admitted=admitted, month=month, budget_usd=settings.monthly_budget_usd,
        spent_usd=round(spent, 4), in_flight_usd=round(in_flight, 4), in_flight_runs=count,
        worst_case_usd=round(worst, 4),
        remaining_usd=round(settings.monthly_budget_usd - spent - in_flight, 4),
        hourly_price_usd=price, instance_type=settings.instance_type,
        instance_count=settings.instance_count, max_runtime_seconds=settings.max_runtime_seconds,
    )


def budget_summary(settings: Settings, store: RunLister, now: datetime | None = None) -> BudgetSummary:
    """Spend, in-flight worst cases and what remains this month (CLI `budget`)."""
    month = _month(now)
    spent = _spent(store, month)
    in_flight, count = _in_flight(store, month, exclude_run=None)
    return BudgetSummary(month=month, budget_usd=settings.monthly_budget_usd, spent_usd=round(spent, 4),
                         in_flight_usd=round(in_flight, 4), in_flight_runs=count,
                         remaining_usd=round(settings.monthly_budget_usd - spent - in_flight, 4))
