"""The Notify step: final run record + one notification per outcome.

This is also the failure path of every other state, so it must cope with ANY state: malformed
execution input, a Catch that fired before `$.run` existed, missing keys, a run record that was never
created. Shape problems never raise here (the failure would go unreported); AWS errors do (retry).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from yoloops_core.budget import job_cost, run_cost, settle_run
from yoloops_core.config import Settings
from yoloops_core.models import EventType, RunStatus, iso, utcnow
from yoloops_core.notifications import Notification, Publisher, publish
from yoloops_core.pricing import UnknownInstanceType
from yoloops_core.reconcile import settle_from_jobs
from yoloops_core.run_metrics import emit_run_metrics
from yoloops_core.steps import StepError, failure_reason

logger = Logger(child=True)

OUTCOMES = ("finished", "rejected", "budget_blocked", "failed", "not_approved")


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _nums(value: Any) -> dict[str, float]:
    return {str(k): f for k, v in _d(value).items() if (f := _num(v)) is not None}


def _parse_ts(ts: Any) -> datetime | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def links(settings: Settings, execution_arn: str | None, job: str | None) -> dict[str, str]:
    region = settings.console_region
    base = f"https://{region}.console.aws.amazon.com"
    out: dict[str, str] = {}
    if execution_arn:
        out["execution"] = f"{base}/states/home?region={region}#/v2/executions/details/{execution_arn}"
    if job:
        out["training_job"] = f"{base}/sagemaker/home?region={region}#/jobs/{job}"
        out["logs"] = (f"{base}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
                       f"$252Faws$252Fsagemaker$252FTrainingJobs$3FlogStreamNameFilter$3D{job}")
    return out


def _failure(state: dict[str, Any]) -> str:
    attempt = _d(_d(state.get("gate")).get("attempt"))
    if attempt.get("retry") is False and _s(attempt.get("reason")):
        return attempt["reason"]  # the attempt loop's verdict: reason + why it stopped
    for key in ("step_error", "error", "notify_error"):
        err = _d(state.get(key))
        if err:
            parsed = StepError.model_validate({"Error": _s(err.get("Error")) or "Unknown",
                                               "Cause": err.get("Cause") if isinstance(err.get("Cause"), str)
                                               else None})
            reason = failure_reason(parsed)
            if parsed.error not in ("States.TaskFailed", "Unknown") and not reason.startswith(parsed.error):
                reason = f"{parsed.error}: {reason}"
            return reason
    return "unknown failure (no error in the workflow state)"


def _report_text(report: dict[str, Any]) -> str:
    for key in ("summary", "summary_text"):
        if _s(report.get(key)):
            return report[key]
    problems = report.get("errors") or report.get("problems") or []
    if isinstance(problems, list) and problems:
        shown = [p if isinstance(p, str) else str(_d(p).get("message") or p) for p in problems[:5]]
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        return "; ".join(shown) + more
    return "see the attached report"


def _settled_cost(run_id: str, settings: Settings, store: Any, ledger: Any, record: dict[str, Any],
                  now: datetime, sagemaker: Any = None) -> tuple[float | None, float | None]:
    """Settle the run's reservations; (cost, spot savings %) over attempts.

    With SageMaker at hand, every attempt whose job exists is settled from DescribeTrainingJob's billing
    (never $0 because Evaluate or Promote failed before recording it); a job still running keeps its hold
    until its own state-change event settles it. Without, from the billing the run record holds."""
    if ledger is not None:
        if sagemaker is not None:
            try:
                settle_from_jobs(run_id, store.get_run(run_id) or record, ledger, sagemaker, now=now,
                                 stack_code=settings.stack_code)
            except Exception as exc:  # never lose the notification; the job's event or the sweep settles later
                logger.warning("could not settle from DescribeTrainingJob; the holds stay until the job's event "
                               "or the watchdog settles them", extra={"run_id": run_id, "error": str(exc)[:300]})
        else:
            settle_run(run_id, store.get_run(run_id) or record, ledger, now=now)
        cost = run_cost(ledger.reservations(run_id))
        if cost is not None:
            return round(cost.cost_usd, 6), cost.spot_savings_pct
    billed = _num(record.get("billable_seconds"))
    if billed is None:
        return None, None
    try:  # runs admitted before the ledger existed
        return round(job_cost(billed, settings.instance_type, settings.instance_count,
                              settings.hourly_price_override_usd), 4), None
    except UnknownInstanceType:
        return None, None


def notify(event: Any, *, settings: Settings, store: Any, sns: Publisher, ledger: Any = None,
           sagemaker: Any = None, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    event = _d(event)
    outcome = event.get("outcome") if event.get("outcome") in OUTCOMES else "failed"
    state = event.get("state")
    state = state if isinstance(state, dict) else {"raw_state": state}
    run = _d(state.get("run"))
    request_ds = _d(state.get("dataset"))  # malformed input: the raw request is the state
    dataset = _d(run.get("dataset")) or request_ds
    run_id = _s(event.get("run_id")) or _s(run.get("run_id")) or "unknown-run"

    record = store.get_run(run_id)
    if record is None:
        store.create_minimal_run(run_id, RunStatus.FAILED, note="run record created by notify",
                                 now=now, dataset=_s(dataset.get("name")),
                                 dataset_version=_s(dataset.get("version")),
                                 execution_arn=_s(run.get("execution_arn")))
        record = store.get_run(run_id) or {}

    evaluation = _d(_d(state.get("evaluation")).get("result"))
    promotion = _d(state.get("promotion"))
    training = _d(state.get("training"))
    gate = _d(state.get("gate"))
    name = _s(dataset.get("name")) or _s(record.get("dataset"))
    version = _s(dataset.get("version")) or _s(record.get("dataset_version"))
    label = f"{name or 'unknown dataset'} {version or ''}".strip()

    reason: str | None = None
    report: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    metrics = _nums(record.get("metrics"))
    deltas: dict[str, float] = {}
    if outcome == "finished" and not evaluation:
        outcome, reason = "failed", "the workflow finished without an evaluation result"
    if outcome == "finished":
        metrics = _nums(evaluation.get("metrics")) or metrics
        deltas = _nums(evaluation.get("deltas"))
        metric = _s(evaluation.get("metric")) or settings.promotion_metric
        value, champ = _num(evaluation.get("challenger")), _num(evaluation.get("champion"))
        shown = f"{metric} {value:.4f}" if value is not None else metric
        verdict = _d(evaluation.get("verdict")) or None
        vs = "first model of the dataset" if champ is None else f"champion {champ:.4f}, delta {value - champ:+.4f}" \
            if value is not None else f"champion {champ:.4f}"
        if champ is not None and evaluation.get("basis") == "paired":
            vs += ", both scored on the same images"
        elif champ is not None and evaluation.get("like_for_like") is False:
            vs += ", NOT like-for-like: the champion's recorded number from another val split"
        if promotion.get("promoted") is True:
            status, etype = RunStatus.PROMOTED, EventType.PROMOTED
            text = f"New champion for {label}: {shown} ({vs})."
            if _s(evaluation.get("warning")):  # e.g. exactly 0 mAP: never promoted silently
                text += f" Warning: {evaluation['warning']}"
        else:
            status, etype = RunStatus.KEPT, EventType.KEPT
            # Evaluate's reason (floor, min improvement, useless model) is more precise than the ASL's
            # KeepChampion default; Promote's (lost the conditional write) wins when there is one.
            result_reason = _s(_d(promotion.get("result")).get("reason"))
            why = (result_reason if _d(promotion.get("result")).get("run_id") else None) \
                or _s(evaluation.get("reason")) or result_reason or "not better than the champion"
            reason = why
            text = f"Champion kept for {label}: challenger {shown} ({vs}); {why}."
        for source in (evaluation, _d(promotion.get("result"))):  # registry trouble is told, never dropped
            if _s(source.get("registry_error")):
                text += f" ({source['registry_error']}; `yoloops champion {name} --repair` re-syncs it)"
                break
        note = _s(_d(_d(state.get("validation")).get("report")).get("layout_note"))
        if note:  # which export layout it was, and whether val was split off by the validator
            text = f"{text} Dataset {note}."
    elif outcome == "rejected":
        status, etype = RunStatus.REJECTED, EventType.REJECTED
        report = _d(_d(state.get("validation")).get("report")) or None
        text = f"Dataset {label} rejected, no training started: {_report_text(report or {})}"
        reason = "dataset failed validation"
    elif outcome == "budget_blocked":
        status, etype = RunStatus.BUDGET_BLOCKED, EventType.BUDGET_BLOCKED
        b = _d(gate.get("budget"))
        reason = _s(b.get("reason"))  # the gate's own words: clamp below the minimum, unknown price, ...
        figures = {k: _num(b.get(k)) for k in ("worst_case_usd", "spent_usd", "in_flight_usd", "budget_usd")}
        if reason:
            pass
        elif all(v is not None for v in figures.values()):
            reason = (f"worst case ${figures['worst_case_usd']:.2f} + spent ${figures['spent_usd']:.2f} + "
                      f"in flight ${figures['in_flight_usd']:.2f} > monthly budget ${figures['budget_usd']:.2f}")
        else:
            reason = "the monthly training budget would be exceeded"
        text = f"Run for {label} blocked by the budget gate, no training job created: {reason}."
    elif outcome == "not_approved":  # the train approval was rejected or timed out (yoloops_core.approval)
        status, etype = RunStatus.NOT_APPROVED, EventType.NOT_APPROVED
        reason = _s(_d(state.get("approval")).get("reason")) or "training was not approved"
        text = (f"Run {run_id} for {label} ended before training, no training job created: {reason}. "
                "Its budget reservation is released.")
    else:
        status, etype = RunStatus.FAILED, EventType.FAILED
        reason = reason or _failure(state)
        text = f"Run {run_id} for {label} failed: {reason}"

    job = _s(training.get("job_name")) or _s(_d(gate.get("attempt")).get("job_name")) or _s(record.get("current_job"))
    attempts = int(_num(record.get("attempts")) or 0) or None
    interruptions = int(_num(record.get("interruptions")) or 0)
    started = _parse_ts(record.get("started_at")) or _parse_ts(run.get("started_at"))
    duration = round((now - started).total_seconds(), 1) if started else None
    cost, savings = _settled_cost(run_id, settings, store, ledger, record, now, sagemaker)
    metric_name = _s(evaluation.get("metric")) or settings.promotion_metric
    store.update_run(
        run_id, now=now, status=status, note=reason or outcome, finished_at=iso(now), duration_s=duration,
        cost_usd=cost, spot_savings_pct=savings, failure_reason=reason if status == RunStatus.FAILED else None,
        delta=deltas.get(metric_name) if deltas else None,
    )
    notification = Notification(
        event_type=etype, run_id=run_id, dataset=name, version=version, text=text, metrics=metrics,
        delta=deltas, attempts=attempts, interruptions=interruptions, duration_s=duration, cost_usd=cost,
        spot_savings_pct=savings,
        links=links(settings, _s(run.get("execution_arn")) or _s(record.get("execution_arn")), job),
        reason=reason, report=report, verdict=verdict, base_weights=_s(record.get("base_weights")),
        image_uri=_s(record.get("image_uri")),
    )
    message_id = publish(notification, settings.notifications_topic_arn, sns)
    emit_run_metrics(outcome=status.value, duration_s=duration, training_s=_num(record.get("billable_seconds")),
                     interruptions=interruptions, cost_usd=cost)
    logger.info("run finished", extra={"run_id": run_id, "outcome": outcome, "status": status.value,
                                       "message_id": message_id})
    return {"outcome": outcome, "status": status.value, "message_id": message_id}
