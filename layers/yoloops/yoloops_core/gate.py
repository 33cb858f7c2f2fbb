"""CheckBudget step: admit one attempt (the first, or a retry) within the monthly budget; its plan.

Every attempt passes here before its training job exists, so a retry can no longer bill a worst case
that was never reserved. The plan is built per attempt: MaxRuntime clamped to what the budget buys,
and on-demand capacity once the run has had `SpotFailuresBeforeOnDemand` spot-related failures.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from yoloops_core import budget
from yoloops_core.budget import BudgetDecision, Ledger
from yoloops_core.config import Settings
from yoloops_core.models import AttemptState, EventType, RunContext, RunStatus
from yoloops_core.notifications import Notification, Publisher, publish
from yoloops_core.plan import build_plan, first_attempt
from yoloops_core.pricing import UnknownInstanceType, format_usd
from yoloops_core.steps import ImageState
from yoloops_core.weights import describe as describe_weights
from yoloops_core.weights import record_value as weights_record

logger = Logger(child=True)


class CheckBudgetEvent(BaseModel):
    run: RunContext
    image: ImageState
    attempt: AttemptState | None = None  # None: the run's first attempt


def spot_failures(record: dict[str, Any]) -> int:
    return len(record.get("spot_failures_by_attempt") or {})


def attempt_plan(plan: dict[str, Any], decision: BudgetDecision) -> dict[str, Any]:
    """The run's plan with this attempt's MaxRuntime (maybe clamped) and capacity (spot or not)."""
    plan = copy.deepcopy(plan)
    stopping = plan["stopping_condition"]
    stopping["MaxRuntimeInSeconds"] = decision.max_runtime_seconds
    if not decision.use_spot:
        plan["use_spot"] = False
        stopping.pop("MaxWaitTimeInSeconds", None)
    return plan


def _unpriced(run_id: str, attempt: int, settings: Settings, why: str, now: datetime | None) -> BudgetDecision:
    return BudgetDecision(
        admitted=False, attempt=attempt, month=budget.month_of_now(now), budget_usd=settings.monthly_budget_usd,
        spent_usd=0.0, in_flight_usd=0.0, worst_case_usd=0.0, full_worst_case_usd=0.0, remaining_usd=0.0,
        hourly_price_usd=0.0, price_source="none", instance_type=settings.instance_type,
        instance_count=settings.instance_count, max_runtime_seconds=settings.max_runtime_seconds, reason=why)


def _figures(d: BudgetDecision) -> str:
    return (f"{format_usd(d.worst_case_usd)} worst case, {format_usd(d.spent_usd)} spent, "
            f"{format_usd(d.in_flight_usd)} in flight, budget {format_usd(d.budget_usd)}")


def _capacity(d: BudgetDecision, spot_failed: int) -> str:
    if d.use_spot:
        return "spot"
    return f"on-demand (after {spot_failed} spot failures)" if spot_failed else "on-demand"


def _limits(d: BudgetDecision, settings: Settings) -> str:
    if not d.clamped:
        return ""
    return (f" MaxRuntime clamped to {d.max_runtime_seconds} s (of {settings.max_runtime_seconds} s): that is what "
            f"the {format_usd(d.remaining_usd)} left this month buys.")


def check_budget(event: CheckBudgetEvent, *, settings: Settings, store: Any, ledger: Ledger, sns: Publisher,
                 budgets: Any = None, prices: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """Reserve this attempt's worst case or refuse it; publish the start (or retry) message once."""
    run = event.run
    attempt = event.attempt or first_attempt(run.run_id, settings.stack_code)
    record = store.get_run(run.run_id) or {}
    spot_failed = spot_failures(record)
    use_spot = settings.use_spot and spot_failed < settings.spot_failures_before_on_demand
    try:
        price = budget.price_of(settings, prices if prices is not None else store, now)
    except UnknownInstanceType as exc:
        decision = _unpriced(run.run_id, attempt.number, settings, str(exc), now)
    else:
        decision = budget.admit_attempt(run.run_id, attempt.number, settings, ledger, use_spot=use_spot, price=price,
                                        budgets=budgets, now=now)
    plan = attempt_plan(build_plan(run, event.image.image_uri, settings), decision)
    capacity = _capacity(decision, spot_failed)
    if decision.admitted:
        # RequireApproval train: the reservation is held while a person decides (no job exists yet).
        awaiting = run.approve_train and attempt.number == 1
        already = int(record.get("attempts") or 0) >= attempt.number and \
            record.get("status") in (RunStatus.TRAINING.value, RunStatus.AWAITING_APPROVAL.value)
        store.record_job(run.run_id, attempt.number, attempt.job_name, now=now,
                         status=RunStatus.AWAITING_APPROVAL if awaiting else RunStatus.TRAINING,
                         note=f"attempt {attempt.number} admitted ({capacity}): {_figures(decision)}"
                              + _limits(decision, settings),
                         worst_case_cost_usd=decision.worst_case_usd, image_uri=event.image.image_uri)
        if not already:  # a re-invoked step does not notify twice
            weights = weights_record(run.base_weights, plan["hyperparameters"].get("model", ""))
            publish(_admitted(run, decision, attempt, settings, capacity, weights), settings.notifications_topic_arn,
                    sns)
    elif attempt.number == 1:
        store.update_run(run.run_id, now=now, status=RunStatus.BUDGET_BLOCKED, note=f"blocked: {decision.reason}",
                         worst_case_cost_usd=decision.full_worst_case_usd)
    else:
        # The attempt loop ends here; the checkpoints stay for a later run or a manual resume.
        reason = (f"budget stopped retries: attempt {attempt.number} not admitted ({decision.reason}); "
                  f"checkpoints kept at s3://{settings.artifacts_bucket}/checkpoints/{run.run_id}/")
        attempt = AttemptState(number=attempt.number - 1, job_name=_previous_job(record, attempt),
                               retry=False, reason=reason)
        store.update_run(run.run_id, now=now, note=reason)
    logger.info("budget decision", extra={"run_id": run.run_id, "attempt": decision.attempt,
                                          **decision.model_dump(exclude={"attempt"})})
    return {"admitted": decision.admitted, "plan": plan, "attempt": attempt.model_dump(mode="json"),
            "budget": decision.model_dump(mode="json")}


def _previous_job(record: dict[str, Any], attempt: AttemptState) -> str:
    jobs = record.get("job_names") or []
    return jobs[-1] if jobs else attempt.job_name


def _admitted(run: RunContext, d: BudgetDecision, attempt: AttemptState, settings: Settings,
              capacity: str, weights: str) -> Notification:
    where = f"{d.instance_count} x {d.instance_type} ({capacity})"
    if attempt.number == 1 and run.approve_train:
        text = (f"Awaiting approval to train {run.dataset.name} {run.dataset.version} (run {run.run_id}, "
                f"job {attempt.job_name}) on {where} from {describe_weights(weights)}; worst case "
                f"{format_usd(d.worst_case_usd)} reserved, {format_usd(d.remaining_usd)} of {format_usd(d.budget_usd)} "
                "left this month before it.")
        etype = EventType.STARTED
    elif attempt.number == 1:
        text = (f"Training started for {run.dataset.name} {run.dataset.version} (run {run.run_id}, "
                f"job {attempt.job_name}) on {where} from {describe_weights(weights)}; worst case {format_usd(d.worst_case_usd)}, "
                f"{format_usd(d.remaining_usd)} of {format_usd(d.budget_usd)} left this month before it.")
        etype = EventType.STARTED
    else:
        text = (f"Retrying {run.dataset.name} {run.dataset.version} as job {attempt.job_name} (attempt "
                f"{attempt.number}) on {where}, resuming from the run's checkpoints; worst case "
                f"{format_usd(d.worst_case_usd)} reserved.")
        etype = EventType.RETRY
    return Notification(event_type=etype, run_id=run.run_id, dataset=run.dataset.name, version=run.dataset.version,
                        attempts=attempt.number, text=text + _limits(d, settings), reason=attempt.reason,
                        base_weights=weights)
