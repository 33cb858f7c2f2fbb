"""Budget gate v2 and cost accounting.

AWS Budgets cannot stop a SageMaker job and Cost Explorer lags by hours, so the gate keeps its own
books (yoloops_core.ledger): every attempt, retries included, reserves its worst case before its
job is created, and the reservation becomes the attempt's actual cost when it ends. Admission is an
atomic conditional write, so concurrent runs can never hold more than the budget between them.

When the remaining budget cannot buy MaxRuntime but can buy `MinRuntimeSeconds`, the attempt is
admitted with its MaxRuntime clamped to what is left (the start message says so).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from yoloops_core.config import Settings
from yoloops_core.ledger import MonthTotals, Reservation
from yoloops_core.models import iso, utcnow
from yoloops_core.prices import Price, price_for
from yoloops_core.pricing import hourly_price
from yoloops_core.store import previous_month

# Reservation races: re-read the month and try again this many times before giving up.
MAX_ADMISSION_TRIES = 8


class Ledger(Protocol):
    def totals(self, month: str) -> MonthTotals: ...
    def reserve(self, res: Reservation, budget_usd: float, extra_spent_usd: float = 0.0,
                now: datetime | None = None) -> tuple[bool, Reservation]: ...
    def reservation(self, run_id: str, attempt: int) -> Reservation | None: ...
    def reservations(self, run_id: str) -> list[Reservation]: ...
    def settle(self, run_id: str, attempt: int, billable_seconds: float, training_seconds: float | None = None,
               now: datetime | None = None) -> Reservation | None: ...


def price_of(settings: Settings, prices: Any = None, now: datetime | None = None) -> Price:
    """The hourly price the gate uses: the override, else the Price List API cache (`prices`, the runs
    store), else the shipped table; UnknownPrice (an UnknownInstanceType) says how to fix it."""
    return price_for(settings, prices, now)


class BudgetDecision(BaseModel):
    admitted: bool
    attempt: int = 1
    month: str
    budget_usd: float
    spent_usd: float
    in_flight_usd: float  # reserved by attempts that have not ended (other runs' and this run's)
    worst_case_usd: float  # what this attempt reserves (clamped when `clamped`)
    full_worst_case_usd: float  # price x MaxRuntime, before any clamp
    remaining_usd: float  # budget - spent - in flight, before this attempt
    hourly_price_usd: float
    price_source: str = ""
    price_as_of: str | None = None
    instance_type: str
    instance_count: int
    max_runtime_seconds: int
    clamped: bool = False
    use_spot: bool = True
    reason: str | None = None


class DatasetSpend(BaseModel):
    runs: int = 0
    cost_usd: float = 0.0


class BudgetSummary(BaseModel):
    month: str
    budget_usd: float
    spent_usd: float
    in_flight_usd: float
    in_flight_runs: int
    remaining_usd: float
    datasets: dict[str, DatasetSpend] = Field(default_factory=dict)  # this month's runs and cost per dataset


def worst_case_cost(instance_type: str, instance_count: int, max_runtime_seconds: int,
                    override_usd: float | None = None) -> float:
    """Hourly price x max runtime hours x instance count."""
    return hourly_price(instance_type, override_usd) * max_runtime_seconds / 3600.0 * instance_count


def job_cost(billable_seconds: float, instance_type: str, instance_count: int,
             override_usd: float | None = None) -> float:
    """Cost of billed training time (spot savings are already in BillableTimeInSeconds)."""
    return billable_seconds * hourly_price(instance_type, override_usd) / 3600.0 * instance_count


def _seconds(description: dict[str, Any] | None, *keys: str) -> float:
    if not isinstance(description, dict):
        return 0.0
    for key in keys:
        value = description.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


def billable_seconds(description: dict[str, Any] | None) -> float:
    """BillableTimeInSeconds of a DescribeTrainingJob output (TrainingTimeInSeconds when absent)."""
    return _seconds(description, "BillableTimeInSeconds", "TrainingTimeInSeconds")


def training_seconds(description: dict[str, Any] | None) -> float:
    return _seconds(description, "TrainingTimeInSeconds", "BillableTimeInSeconds")


def month_of_now(now: datetime | None) -> str:
    return iso(now or utcnow())[:7]


def _aws_budget_spend(settings: Settings, budgets: Any) -> float:
    """Actual spend AWS Budgets reports for BUDGET_NAME (hours late; the ledger is the live figure)."""
    if not settings.budget_name or budgets is None:
        return 0.0
    account = settings.notifications_topic_arn.split(":")[4]
    resp = budgets.describe_budget(AccountId=account, BudgetName=settings.budget_name)
    actual = (((resp.get("Budget") or {}).get("CalculatedSpend") or {}).get("ActualSpend") or {}).get("Amount")
    return float(actual or 0.0)


def admit_attempt(run_id: str, attempt: int, settings: Settings, ledger: Ledger, *, use_spot: bool,
                  price: Price, budgets: Any = None, now: datetime | None = None) -> BudgetDecision:
    """Reserve this attempt's worst case, clamping MaxRuntime when only part of it fits."""
    month = month_of_now(now)
    count = settings.instance_count
    per_second = price.hourly_usd * count / 3600.0
    full = per_second * settings.max_runtime_seconds
    aws_spend = _aws_budget_spend(settings, budgets)
    decision: BudgetDecision | None = None
    if not price.hourly_usd > 0:
        raise ValueError(f"hourly price {price.hourly_usd} ({price.source}) refused: a price of 0 would admit every "
                         "run for free; set HourlyPriceOverrideUsd to the on-demand price or leave it empty")
    for _ in range(MAX_ADMISSION_TRIES):
        totals = ledger.totals(month)
        # Last month's attempts still running are billed this month when they end: their holds count here
        # until settled (they only shrink, so reading them outside the transaction is conservative).
        carried = ledger.totals(previous_month(month)).reserved_usd
        # Spend is the larger of the ledger's and AWS Budgets' (which also sees spend outside yoloops).
        extra = max(0.0, aws_spend - totals.spent_usd)
        spent = totals.spent_usd + extra
        in_flight = totals.reserved_usd + carried
        remaining = settings.monthly_budget_usd - spent - in_flight
        runtime, clamped, reason = settings.max_runtime_seconds, False, None
        if full > remaining + 1e-9 and per_second > 0:
            affordable = math.floor(round(max(remaining, 0.0) / per_second, 6))  # 1399.9999 is 1400 s
            if affordable >= settings.min_runtime_seconds:
                runtime, clamped = min(affordable, settings.max_runtime_seconds), True
            else:
                reason = (f"${remaining:.2f} left of ${settings.monthly_budget_usd:.2f} this month buys "
                          f"{affordable} s of {count} x {settings.instance_type}, less than MinRuntimeSeconds "
                          f"({settings.min_runtime_seconds} s); the full worst case is ${full:.2f}")
        worst = per_second * runtime
        decision = BudgetDecision(
            admitted=False, attempt=attempt, month=month, budget_usd=settings.monthly_budget_usd,
            spent_usd=round(spent, 4), in_flight_usd=round(in_flight, 4), worst_case_usd=round(worst, 6),
            full_worst_case_usd=round(full, 6), remaining_usd=round(remaining, 4), hourly_price_usd=price.hourly_usd,
            price_source=price.source, price_as_of=price.as_of, instance_type=settings.instance_type,
            instance_count=count, max_runtime_seconds=runtime, clamped=clamped, use_spot=use_spot, reason=reason)
        if reason is not None:
            break
        res = Reservation(run_id=run_id, attempt=attempt, month=month, amount_usd=worst, hourly_usd=price.hourly_usd,
                          price_source=price.source, max_runtime_seconds=runtime,
                          instance_type=settings.instance_type, instance_count=count, use_spot=use_spot,
                          clamped=clamped)
        admitted, held = ledger.reserve(res, settings.monthly_budget_usd, extra_spent_usd=extra + carried, now=now)
        if admitted:
            # A re-invoked step gets the reservation it made the first time, with its own figures.
            return decision.model_copy(update={
                "admitted": True, "worst_case_usd": held.amount_usd, "max_runtime_seconds": held.max_runtime_seconds,
                "clamped": held.clamped, "use_spot": held.use_spot, "hourly_price_usd": held.hourly_usd})
        # Someone else reserved in between: re-read the month and decide again (maybe clamped).
    assert decision is not None
    if decision.reason is None:
        decision = decision.model_copy(update={"reason": (
            f"worst case ${decision.worst_case_usd:.2f} + spent ${decision.spent_usd:.2f} + in flight "
            f"${decision.in_flight_usd:.2f} > monthly budget ${decision.budget_usd:.2f}")})
    return decision


def settle_run(run_id: str, record: dict[str, Any], ledger: Ledger, now: datetime | None = None) -> list[Reservation]:
    """Settle every open reservation of a finished run from the billing the run record holds."""
    billed = record.get("billable_by_attempt") or {}
    trained = record.get("training_by_attempt") or {}
    settled = []
    for res in ledger.reservations(run_id):
        if res.state != "reserved":
            continue
        done = ledger.settle(run_id, res.attempt, float(billed.get(str(res.attempt)) or 0.0),
                             float(trained[str(res.attempt)]) if str(res.attempt) in trained else None, now=now)
        if done is not None:
            settled.append(done)
    return settled


class RunCost(BaseModel):
    cost_usd: float
    billable_seconds: float
    training_seconds: float
    spot_savings_pct: float | None
    hourly_price_usd: float | None = None
    price_source: str | None = None


def run_cost(reservations: list[Reservation]) -> RunCost | None:
    """Sum over attempts of billable seconds x the price each used, and the spot saving."""
    done = [r for r in reservations if r.actual_usd is not None]
    if not done:
        return None
    billed = sum(r.billable_seconds or 0.0 for r in done)
    trained = sum((r.training_seconds if r.training_seconds is not None else r.billable_seconds or 0.0) for r in done)
    savings = round(100.0 * (1.0 - billed / trained), 1) if trained > 0 else None
    last = done[-1]
    return RunCost(cost_usd=round(sum(r.actual_usd or 0.0 for r in done), 6), billable_seconds=billed,
                   training_seconds=trained, spot_savings_pct=savings, hourly_price_usd=last.hourly_usd,
                   price_source=last.price_source)


def budget_summary(settings: Settings, ledger: Ledger, store: Any, now: datetime | None = None) -> BudgetSummary:
    """Spend, reservations in flight and what remains this month (CLI `budget`)."""
    month = month_of_now(now)
    totals = ledger.totals(month)
    carried = ledger.totals(previous_month(month)).reserved_usd  # last month's attempts still running
    in_flight = store.list_in_flight(month)
    datasets: dict[str, DatasetSpend] = {}
    for run in store.list_runs_by_month(month):
        row = datasets.setdefault(str(run.get("dataset") or "(unknown)"), DatasetSpend())
        row.runs += 1
        row.cost_usd = round(row.cost_usd + float(run.get("cost_usd") or 0.0), 6)
    return BudgetSummary(month=month, budget_usd=settings.monthly_budget_usd, spent_usd=round(totals.spent_usd, 4),
                         in_flight_usd=round(totals.reserved_usd + carried, 4), in_flight_runs=len(in_flight),
                         remaining_usd=round(settings.monthly_budget_usd - totals.committed_usd - carried, 4),
                         datasets=datasets)
