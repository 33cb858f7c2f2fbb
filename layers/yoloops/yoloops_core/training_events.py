"""SageMaker "Training Job State Change" events: record SecondaryStatus transitions on the run record,
count spot interruptions per attempt, notify once per interruption.

Dedupe key. EventBridge delivers at least once and SageMaker may emit the same transition more
than once, each time with a new envelope `id`, so the id cannot dedupe. The detail is a snapshot of
DescribeTrainingJob; one transition is identified by
    (TrainingJobName, TrainingJobStatus, SecondaryStatus, len(SecondaryStatusTransitions), last StartTime)
The transitions list only grows, and a job interrupted twice has a longer list the second time, so
two real interruptions never share a key while re-sends of one always do. LastModifiedTime is not
used when transitions are present: it also moves for updates that are not transitions (status
messages, metrics), which would turn a re-send into a "new" event. Without transitions (the AWS
sample has an empty list) LastModifiedTime is the best remaining discriminator.

Events for jobs that are not ours (name not `<run id>-a<n>`, or no run record) change nothing.
Unparseable events are logged and dropped with a reason: raising would only make EventBridge/Lambda
retry an event that can never succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from yoloops_core.logs import correlate
from yoloops_core.models import (
    EventType,
    describe_validation_error,
    iso,
    run_id_from_job_name,
    utcnow,
)
from yoloops_core.notifications import Notification

logger = Logger(child=True)

DETAIL_TYPE = "SageMaker Training Job State Change"
INTERRUPTED = "Interrupted"
MAX_WAIT_EXCEEDED = "MaxWaitTimeExceeded"
ENDED = ("Completed", "Failed", "Stopped")


class _Transition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Status: str
    StartTime: str | int | float | None = None
    StatusMessage: str | None = None


class _Metric(BaseModel):
    model_config = ConfigDict(extra="ignore")

    MetricName: str
    Value: float


class TrainingJobDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    TrainingJobName: str = Field(min_length=1, max_length=63)
    TrainingJobStatus: str = Field(min_length=1, max_length=64)
    SecondaryStatus: str | None = Field(None, max_length=64)
    LastModifiedTime: str | int | float | None = None
    SecondaryStatusTransitions: list[_Transition] = Field(default_factory=list)
    FinalMetricDataList: list[_Metric] = Field(default_factory=list)
    TrainingJobArn: str | None = None
    BillableTimeInSeconds: int | float | None = None
    TrainingTimeInSeconds: int | float | None = None


class TrainingJobStateChange(EventBridgeModel):
    detail: TrainingJobDetail


@dataclass(frozen=True)
class EventOutcome:
    action: Literal["recorded", "duplicate", "ignored", "rejected"]
    reason: str
    run_id: str | None = None
    notified: bool = False


def dedupe_key(detail: TrainingJobDetail) -> str:
    transitions = detail.SecondaryStatusTransitions
    marker = f"t{len(transitions)}@{transitions[-1].StartTime}" if transitions else f"m{detail.LastModifiedTime}"
    return "|".join([detail.TrainingJobName, detail.TrainingJobStatus, detail.SecondaryStatus or "-", marker])


def epoch_from_metrics(metrics: list[dict[str, Any]] | list[_Metric]) -> int | None:
    for metric in metrics:
        name = metric.MetricName if isinstance(metric, _Metric) else metric.get("MetricName")
        value = metric.Value if isinstance(metric, _Metric) else metric.get("Value")
        if name == "epoch" and isinstance(value, int | float):
            return int(value)
    return None


# ---------------------------------------------------------------- store

class RecordResult(BaseModel):
    outcome: Literal["recorded", "duplicate", "no_run"]
    record: dict[str, Any] = Field(default_factory=dict)  # plain values (numbers as int) after the update


class TrainingEventStore(Protocol):
    def record(self, run_id: str, key: str, *, secondary_status: str, job_name: str, attempt: int,
               interrupted: bool, at: str) -> RecordResult: ...

    def forget(self, run_id: str, key: str, *, attempt: int, interrupted: bool) -> None: ...


def _plain(value: dict[str, Any]) -> Any:
    """Low-level DynamoDB attribute value -> Python (the few types this module reads)."""
    (kind, inner), = value.items()
    if kind == "N":
        return int(inner) if inner.lstrip("-").isdigit() else float(inner)
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    if kind in ("SS", "NS"):
        return set(inner)
    return inner


class DynamoTrainingEventStore:
    """Run record updates (`pk=RUN#<run id>`, `sk=RUN`) with one conditional write per transition."""

    def __init__(self, table: str, dynamodb: Any) -> None:
        self.table = table
        self.ddb = dynamodb

    def _key(self, run_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}}

    def record(self, run_id: str, key: str, *, secondary_status: str, job_name: str, attempt: int,
               interrupted: bool, at: str) -> RecordResult:
        names = {"#seen": "seen_events", "#last": "last_secondary_status", "#upd": "updated_at",
                 "#job": "current_job"}
        values: dict[str, Any] = {":key": {"S": key}, ":keyset": {"SS": [key]},
                                  ":status": {"S": secondary_status}, ":at": {"S": at}, ":job": {"S": job_name}}
        sets = ["#last = :status", "#upd = :at", "#job = :job"]
        adds = ["#seen :keyset"]
        if interrupted:
            # A nested SET needs the map to exist: create it first (idempotent, no effect if present).
            try:
                self.ddb.update_item(
                    TableName=self.table, Key=self._key(run_id),
                    UpdateExpression="SET #iba = if_not_exists(#iba, :empty)",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames={"#iba": "interruptions_by_attempt"},
                    ExpressionAttributeValues={":empty": {"M": {}}})
            except self.ddb.exceptions.ConditionalCheckFailedException:
                return RecordResult(outcome="no_run")
            names |= {"#int": "interruptions", "#iba": "interruptions_by_attempt", "#att": str(attempt)}
            values |= {":one": {"N": "1"}, ":zero": {"N": "0"}}
            sets.append("#iba.#att = if_not_exists(#iba.#att, :zero) + :one")
            adds.append("#int :one")
        try:
            response = self.ddb.update_item(
                TableName=self.table, Key=self._key(run_id),
                UpdateExpression="SET " + ", ".join(sets) + " ADD " + ", ".join(adds),
                ConditionExpression="attribute_exists(pk) AND NOT contains(#seen, :key)",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except self.ddb.exceptions.ConditionalCheckFailedException as exc:
            item = exc.response.get("Item")
            if item is None:  # older backends do not return the item: look
                item = self.ddb.get_item(TableName=self.table, Key=self._key(run_id),
                                         ProjectionExpression="pk").get("Item")
            return RecordResult(outcome="duplicate" if item else "no_run")
        return RecordResult(outcome="recorded", record={k: _plain(v) for k, v in response["Attributes"].items()})

    def forget(self, run_id: str, key: str, *, attempt: int, interrupted: bool) -> None:
        """Undo `record` (the notification failed) so the retried event is processed again."""
        names = {"#seen": "seen_events"}
        values: dict[str, Any] = {":keyset": {"SS": [key]}, ":key": {"S": key}}
        expression = "DELETE #seen :keyset"
        if interrupted:
            names |= {"#int": "interruptions", "#iba": "interruptions_by_attempt", "#att": str(attempt)}
            values[":minus"] = {"N": "-1"}
            expression = "SET #iba.#att = #iba.#att + :minus DELETE #seen :keyset ADD #int :minus"
        self.ddb.update_item(TableName=self.table, Key=self._key(run_id), UpdateExpression=expression,
                             ConditionExpression="contains(#seen, :key)",
                             ExpressionAttributeNames=names, ExpressionAttributeValues=values)


# ---------------------------------------------------------------- domain

@dataclass(frozen=True)
class TrainingEventDeps:
    store: TrainingEventStore
    notify: Any  # Callable[[Notification], Any]
    # job name -> FinalMetricDataList (DescribeTrainingJob); the event detail does not carry metrics.
    describe_metrics: Any  # Callable[[str], list[dict]]
    console_region: str = "us-east-1"
    # (run id, attempt, event detail) -> settle that attempt's reservation once its job has ended
    # (yoloops_core.reconcile.settle_ended_attempt); None: no settling (tests of transitions only).
    settle: Any = None
    # Settings.stack_code: another stack's job in the same account is not ours (its name has another code).
    stack_code: str = ""


def _ignored(reason: str, run_id: str | None = None, level: str = "info") -> EventOutcome:
    getattr(logger, level)("training event ignored", extra={"reason": reason, "run_id": run_id})
    return EventOutcome("ignored" if level == "info" else "rejected", reason, run_id)


def handle_training_event(event: Any, deps: TrainingEventDeps) -> EventOutcome:
    if not isinstance(event, dict) or event.get("detail-type") != DETAIL_TYPE:
        kind = event.get("detail-type") if isinstance(event, dict) else type(event).__name__
        return _ignored(f"not a {DETAIL_TYPE!r} event ({str(kind)[:80]!r})", level="warning")
    try:
        change = TrainingJobStateChange.model_validate(event)
    except ValidationError as exc:
        return _ignored(describe_validation_error(exc, "training job state change"), level="warning")
    detail = change.detail
    parsed = run_id_from_job_name(detail.TrainingJobName, deps.stack_code)
    if parsed is None and (swept := _sweep_job(detail.TrainingJobName, event, deps)) is not None:
        return swept
    if parsed is None:
        return _ignored(f"job {detail.TrainingJobName} is not this stack's (no '-{deps.stack_code}-a<attempt>' "
                        "suffix)" if deps.stack_code else
                        f"job {detail.TrainingJobName} is not a yoloops job (no '-a<attempt>' suffix)")
    run_id, attempt = parsed
    correlate(logger, run_id)  # every log line of this event names its run
    secondary = detail.SecondaryStatus or detail.TrainingJobStatus
    key = dedupe_key(detail)
    log = {"run_id": run_id, "job": detail.TrainingJobName, "attempt": attempt, "status": detail.TrainingJobStatus,
           "secondary_status": secondary, "event_id": change.id, "dedupe_key": key}

    at = iso(utcnow())
    # The status itself (last_secondary_status, current_job), deduped by the event's key.
    result = deps.store.record(run_id, key, secondary_status=secondary, job_name=detail.TrainingJobName,
                               attempt=attempt, interrupted=False, at=at)
    if result.outcome == "no_run":
        return _ignored(f"job {detail.TrainingJobName}: no run record {run_id}; not ours", run_id)
    if secondary == MAX_WAIT_EXCEEDED and result.outcome == "recorded":
        logger.warning("spot capacity wait exceeded", extra=log)
    # The job's end settles its reservation now, not at the next sweep; re-sends are no-ops (the
    # ledger settles once), and a failure here raises so EventBridge's retry settles it.
    if detail.TrainingJobStatus in ENDED and deps.settle is not None \
            and deps.settle(run_id, attempt, event["detail"]) is not None:
        logger.info("reservation settled on the job's end", extra=log)
    # Interruptions come from the whole transition list, each with its own key: one event may carry
    # several transitions at once (an Interrupted one hidden behind the current status), and a later
    # event repeats earlier ones (their keys make those repeats no-ops).
    notified = 0
    for mark in interruption_keys(detail):
        counted = deps.store.record(run_id, mark, secondary_status=secondary, job_name=detail.TrainingJobName,
                                    attempt=attempt, interrupted=True, at=at)
        if counted.outcome != "recorded":
            continue
        try:
            deps.notify(_interruption_notice(detail, run_id, attempt, counted.record, deps))
        except Exception:
            # Un-record so the retried invocation notifies: once per interruption, not at most once.
            deps.store.forget(run_id, mark, attempt=attempt, interrupted=True)
            raise
        notified += 1
        logger.warning("spot interruption recorded and notified", extra=log | {"interruption_key": mark})
    if notified:
        return EventOutcome("recorded", f"spot interruption on attempt {attempt}", run_id, notified=True)
    if result.outcome == "duplicate":
        logger.info("training event already recorded", extra=log)
        return EventOutcome("duplicate", f"transition {key} already recorded", run_id)
    logger.info("training transition recorded", extra=log)
    return EventOutcome("recorded", f"{detail.TrainingJobStatus}/{secondary}", run_id)


def _sweep_job(name: str, event: dict[str, Any], deps: TrainingEventDeps) -> EventOutcome | None:
    """A sweep's training job (yoloops_core.sweep): its end settles the sweep's reservation NNN at once.
    The run is the job's `yoloops:run-id` tag (the event carries the job's tags)."""
    from yoloops_core.sweep import sweep_job_slot

    slot = sweep_job_slot(name, deps.stack_code)
    detail = event.get("detail") or {}
    tags = detail.get("Tags") if isinstance(detail.get("Tags"), dict) else {}
    run_id = tags.get("yoloops:run-id")
    if slot is None or not isinstance(run_id, str) or not run_id:
        return None
    correlate(logger, run_id)
    status = str(detail.get("TrainingJobStatus") or "")
    if status in ENDED and deps.settle is not None and deps.settle(run_id, slot[1], detail) is not None:
        logger.info("sweep job settled on its end", extra={"run_id": run_id, "job": name, "slot": slot[1]})
        return EventOutcome("recorded", f"sweep job {name} ended {status}: reservation {slot[1]} settled", run_id)
    return EventOutcome("ignored", f"sweep job {name}: {status}", run_id)


def interruption_keys(detail: TrainingJobDetail) -> list[str]:
    """One key per `Interrupted` transition in the list (position + start time: the list only grows);
    an Interrupted event without a list (the AWS sample) counts once, keyed by the event."""
    marks = [f"{detail.TrainingJobName}|{INTERRUPTED}|#{i}@{t.StartTime}"
             for i, t in enumerate(detail.SecondaryStatusTransitions) if t.Status == INTERRUPTED]
    if not marks and (detail.SecondaryStatus == INTERRUPTED):
        marks = [f"{INTERRUPTED}|{dedupe_key(detail)}"]
    return marks


def _interruption_notice(detail: TrainingJobDetail, run_id: str, attempt: int, record: dict[str, Any],
                         deps: TrainingEventDeps) -> Notification:
    epoch = epoch_from_metrics(detail.FinalMetricDataList)
    if epoch is None:
        try:
            epoch = epoch_from_metrics(deps.describe_metrics(detail.TrainingJobName))
        except Exception as exc:  # the epoch only decorates the message; never lose the notice for it
            logger.warning("could not read the job's metrics", extra={"job": detail.TrainingJobName,
                                                                       "error": str(exc)[:300]})
    where = f"at epoch {epoch}" if epoch is not None else "at an unknown epoch"
    from_ = "checkpoint" if epoch is not None else "the last checkpoint"
    by_attempt = record.get("interruptions_by_attempt") or {}
    this_attempt = by_attempt.get(str(attempt), 1)
    total = record.get("interruptions", 1)
    text = (f"spot interrupted {where}, resuming from {from_} "
            f"(job {detail.TrainingJobName}, attempt {attempt}: interruption {this_attempt}; {total} in this run)")
    dataset = record.get("dataset")
    region = deps.console_region
    return Notification(
        event_type=EventType.INTERRUPTED, run_id=run_id, text=text,
        dataset=dataset if isinstance(dataset, str) else None,
        version=record.get("dataset_version") if isinstance(record.get("dataset_version"), str) else None,
        attempts=attempt, interruptions=total if isinstance(total, int) else None,
        metrics={"epoch": float(epoch)} if epoch is not None else {},
        links={"training_job": f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}"
                               f"#/jobs/{detail.TrainingJobName}"},
    )


def default_deps() -> TrainingEventDeps:
    from yoloops_core import aws
    from yoloops_core.config import get_settings
    from yoloops_core.notifications import publish

    settings = get_settings()

    def describe_metrics(job: str) -> list[dict[str, Any]]:
        return aws.client("sagemaker").describe_training_job(TrainingJobName=job).get("FinalMetricDataList", [])

    def settle(run_id: str, attempt: int, detail: dict[str, Any]) -> Any:
        from yoloops_core.ledger import BudgetLedger
        from yoloops_core.reconcile import settle_ended_attempt
        from yoloops_core.store import RunStore

        ddb = aws.client("dynamodb")
        return settle_ended_attempt(run_id, attempt, detail, ledger=BudgetLedger(settings.runs_table, ddb=ddb),
                                    store=RunStore(settings.runs_table, ddb=ddb), sagemaker=aws.client("sagemaker"))

    return TrainingEventDeps(
        store=DynamoTrainingEventStore(settings.runs_table, aws.client("dynamodb")),
        notify=lambda n: publish(n, settings.notifications_topic_arn, aws.client("sns")),
        describe_metrics=describe_metrics,
        console_region=settings.console_region,
        settle=settle,
        stack_code=settings.stack_code,
    )
