"""Does the ledger see every dollar? Its month's spend against AWS Budgets' actual spend.

The ledger (yoloops_core.ledger) is the live figure the gate decides on; AWS Budgets is the bill, hours
late. When the ledger trails the bill by more than a margin, spend escapes the books (a job settled at
$0, spend outside yoloops under the stack's cost-allocation tag): the scheduled RefreshPrices function
publishes the gap as the metric `LedgerTrailsBudgetUsd` (namespace yoloops, dimension Budget), and
the template's LedgerDriftAlarm fires above `LedgerDriftAlarmUsd`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from pydantic import BaseModel

from yoloops_core.config import Settings
from yoloops_core.models import iso, utcnow
from yoloops_core.run_metrics import METRICS_NAMESPACE, SERVICE

logger = Logger(child=True)

METRIC_NAME = "LedgerTrailsBudgetUsd"


class LedgerDrift(BaseModel):
    month: str
    budget_name: str
    ledger_spent_usd: float
    budget_actual_usd: float
    trailing_usd: float  # AWS actual - ledger spent (negative: the ledger is ahead, e.g. Budgets lags)


def budget_actual_spend(budgets: Any, account: str, budget_name: str) -> float:
    resp = budgets.describe_budget(AccountId=account, BudgetName=budget_name)
    spend = ((resp.get("Budget") or {}).get("CalculatedSpend") or {}).get("ActualSpend") or {}
    return float(spend.get("Amount") or 0.0)


def ledger_drift(settings: Settings, ledger: Any, budgets: Any, *, account: str, budget_name: str,
                 now: datetime | None = None) -> LedgerDrift:
    """This month's gap between AWS Budgets' actual spend and the ledger's settled spend."""
    month = iso(now or utcnow())[:7]
    spent = ledger.totals(month).spent_usd
    actual = budget_actual_spend(budgets, account, budget_name)
    return LedgerDrift(month=month, budget_name=budget_name, ledger_spent_usd=round(spent, 4),
                       budget_actual_usd=round(actual, 4), trailing_usd=round(actual - spent, 4))


def publish_drift(drift: LedgerDrift, namespace: str = METRICS_NAMESPACE) -> None:
    """One EMF line (no API call): the alarm reads it per budget, so two stacks in one account never mix."""
    metrics = EphemeralMetrics(namespace=namespace, service=SERVICE)
    metrics.add_dimension(name="Budget", value=drift.budget_name)
    metrics.add_metric(name=METRIC_NAME, unit=MetricUnit.NoUnit, value=drift.trailing_usd)
    metrics.flush_metrics()
    level = "warning" if drift.trailing_usd > 0 else "info"
    getattr(logger, level)("ledger vs AWS Budgets", extra=drift.model_dump())


def check_and_publish(settings: Settings, ledger: Any, budgets: Any, *, account: str,
                      now: datetime | None = None) -> LedgerDrift | None:
    """Publish the gap for the stack's budget (LEDGER_CHECK_BUDGET_NAME, else BUDGET_NAME); None without one."""
    name = settings.ledger_check_budget_name or settings.budget_name
    if not name:
        return None
    drift = ledger_drift(settings, ledger, budgets, account=account, budget_name=name, now=now)
    publish_drift(drift)
    return drift


def daily_checks(settings: Settings, *, store: Any, pricing: Any, ledger: Any, budgets: Any, account: str,
                 now: datetime | None = None) -> dict[str, Any]:
    """The RefreshPrices schedule: refresh the price cache, then publish the ledger's gap to AWS Budgets.

    Both run whatever the other does; either failing fails the invocation (its error alarm) afterwards."""
    from yoloops_core.prices import refresh_prices

    out: dict[str, Any] = {}
    errors: list[Exception] = []
    try:
        out["prices"] = refresh_prices(settings, store, pricing, now=now).model_dump()
    except Exception as exc:
        errors.append(exc)
    try:
        drift = check_and_publish(settings, ledger, budgets, account=account, now=now)
        out["ledger_drift"] = drift.model_dump() if drift else None
    except Exception as exc:
        logger.exception("could not compare the ledger with AWS Budgets")
        errors.append(exc)
    if errors:
        raise errors[0]
    return out
