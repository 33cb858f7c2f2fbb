"""The optional approval gate: a run waits for a person before it trains and/or before it promotes.

`RequireApproval` = none | train | promote | both. The run waits in a `lambda:invoke.waitForTaskToken`
task (no training job exists, no GPU is held) for at most `ApprovalTimeoutHours`:
- `request_approval` (the task's Lambda) parks the task token on the run (`pk=RUN#<id>`,
  `sk=APPROVAL#<stage>`, status pending) and publishes `approval.requested`, which Slack renders in the
  run's thread with Approve / Reject buttons. For `train` the budget reservation was taken by CheckBudget
  before the wait, so the message shows the real worst case.
- `decide` (the Slack interactions URL, or `yoloops approve|reject RUN`) claims the pending approval by a
  conditional write (one decision per approval, whoever is first) and hands the token back:
  SendTaskSuccess (approved) or SendTaskFailure `ApprovalRejected` (the cause says who and why).
- `approval_closed` (the Catch of a reject or a `States.Timeout`) records who or what decided; a train
  stage then ends the run through Notify (`not_approved`: its reservation is released), a promote
  stage keeps the champion with that reason.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, Protocol

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, RootModel

from yoloops_core.config import Settings
from yoloops_core.models import EventType, InvalidInput, RunContext, RunStatus, iso, utcnow
from yoloops_core.notifications import Notification, Publisher, publish
from yoloops_core.pricing import format_usd
from yoloops_core.steps import StepError, parse_cause
from yoloops_core.store import DynamoTable, _de, _ser, run_pk

logger = Logger(child=True)

APPROVAL_PREFIX = "APPROVAL#"
PENDING, APPROVED, REJECTED, TIMED_OUT, EXPIRED = "pending", "approved", "rejected", "timed_out", "expired"
REJECTED_ERROR = "ApprovalRejected"
Stage = Literal["train", "promote"]
# SendTask* errors that mean "this wait is over already" (timed out, execution stopped).
_ENDED_TOKEN_ERRORS = {"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"}


class ApprovalNotPending(InvalidInput):
    """No approval of the run is waiting (never asked, already decided, or the wait ended)."""


# ---------------------------------------------------------------- step inputs

class ApprovalRequest(BaseModel):
    """`AwaitTrainApproval` / `AwaitPromoteApproval` payload."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["request"]
    stage: Stage
    run: RunContext
    task_token: str = Field(min_length=1, max_length=2048)
    budget: dict[str, Any] | None = None  # CheckBudget's decision (train)
    evaluation: dict[str, Any] | None = None  # Evaluate's result (promote)


class ApprovalClosed(BaseModel):
    """`TrainNotApproved` / `PromotionNotApproved` payload: the Catch's error of the wait."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["closed"]
    stage: Stage
    run: RunContext
    error: StepError


class ApprovalStepEvent(RootModel[ApprovalRequest | ApprovalClosed]):
    root: ApprovalRequest | ApprovalClosed = Field(discriminator="action")


class Decision(BaseModel):
    run_id: str
    stage: Stage
    decision: Literal["approved", "rejected"]
    decided_by: str
    reason: str | None = None
    dataset: str | None = None


# ---------------------------------------------------------------- storage

class TaskCallbacks(Protocol):
    def send_task_success(self, **kwargs: Any) -> dict[str, Any]: ...
    def send_task_failure(self, **kwargs: Any) -> dict[str, Any]: ...


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")


class ApprovalStore(DynamoTable):
    """One item per run and stage: the parked task token and, once decided, who decided what."""

    def park(self, run_id: str, stage: str, token: str, timeout_s: int, now: datetime | None = None,
             **fields: Any) -> bool:
        """Park the token (a re-invoked task re-parks it; a decided approval is never reopened)."""
        item = {"pk": run_pk(run_id), "sk": APPROVAL_PREFIX + stage, "run_id": run_id, "stage": stage,
                "status": PENDING, "task_token": token, "requested_at": iso(now or utcnow()),
                "timeout_seconds": timeout_s, **{k: v for k, v in fields.items() if v is not None}}
        try:
            self.ddb.put_item(TableName=self.table, Item=_ser(item),
                              ConditionExpression="attribute_not_exists(pk) OR #s = :pending",
                              ExpressionAttributeNames={"#s": "status"},
                              ExpressionAttributeValues={":pending": {"S": PENDING}})
        except Exception as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, run_id: str, stage: str) -> dict[str, Any] | None:
        resp = self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key=_ser({"pk": run_pk(run_id), "sk": APPROVAL_PREFIX + stage}))
        return _de(resp.get("Item"))

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        resp = self.ddb.query(TableName=self.table, ConsistentRead=True,
                              KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
                              ExpressionAttributeValues={":pk": {"S": run_pk(run_id)}, ":a": {"S": APPROVAL_PREFIX}})
        return [i for i in (_de(x) for x in resp.get("Items", [])) if i]

    def close(self, run_id: str, stage: str, status: str, by: str, reason: str | None,
              now: datetime | None = None, only_if_pending: bool = True) -> bool:
        """pending -> approved / rejected / timed_out (conditional: one decision per approval)."""
        values: dict[str, Any] = {":s": status, ":by": by, ":at": iso(now or utcnow()), ":pending": PENDING,
                                  ":reason": reason or ""}
        kwargs: dict[str, Any] = {}
        if only_if_pending:
            kwargs["ConditionExpression"] = "#s = :pending"
        else:
            values.pop(":pending")
        try:
            self.ddb.update_item(
                TableName=self.table, Key=_ser({"pk": run_pk(run_id), "sk": APPROVAL_PREFIX + stage}),
                UpdateExpression="SET #s = :s, decided_by = :by, decided_at = :at, reason = :reason",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_ser(values), **kwargs)
        except Exception as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


# ---------------------------------------------------------------- the workflow's steps

def _train_text(run: RunContext, budget: dict[str, Any], hours: float) -> str:
    worst, left, total = budget.get("worst_case_usd"), budget.get("remaining_usd"), budget.get("budget_usd")
    where = f"{budget.get('instance_count', 1)} x {budget.get('instance_type', '?')}"
    spot = "spot" if budget.get("use_spot", True) else "on-demand"
    cost = f"worst case {format_usd(float(worst))} reserved" if isinstance(worst, (int, float)) else "cost unknown"
    money = (f", {format_usd(float(left))} of {format_usd(float(total))} left this month before it"
             if isinstance(left, (int, float)) and isinstance(total, (int, float)) else "")
    return (f"Approval needed to train {run.dataset.name} {run.dataset.version} (run {run.run_id}) on {where} "
            f"({spot}): {cost}{money}. Approve or reject here, or `yoloops approve {run.run_id}` / "
            f"`yoloops reject {run.run_id} --reason ...`; without a decision within {hours:g} h the run ends "
            "and its reservation is released.")


def _promote_text(run: RunContext, evaluation: dict[str, Any], hours: float) -> str:
    metric = evaluation.get("metric") or "metric"
    value, champ = evaluation.get("challenger"), evaluation.get("champion")
    shown = f"{metric} {value:.4f}" if isinstance(value, (int, float)) else str(metric)
    vs = (f" against the champion's {champ:.4f} ({value - champ:+.4f})"
          if isinstance(value, (int, float)) and isinstance(champ, (int, float)) else " (first model of the dataset)")
    return (f"Approval needed to promote run {run.run_id} as champion of {run.dataset.name}: {shown}{vs}. "
            f"Approve or reject here, or `yoloops approve {run.run_id}` / `yoloops reject {run.run_id} --reason ...`;"
            f" without a decision within {hours:g} h the champion is kept.")


def request_approval(event: ApprovalRequest, *, settings: Settings, approvals: ApprovalStore, store: Any,
                     sns: Publisher, now: datetime | None = None) -> dict[str, Any]:
    """Park the task token and ask the team (Slack thread with buttons, e-mail with the commands)."""
    run, stage = event.run, event.stage
    timeout_s = run.approval_timeout_seconds
    hours = timeout_s / 3600
    summary = (_train_text(run, event.budget or {}, hours) if stage == "train"
               else _promote_text(run, event.evaluation or {}, hours))
    if not approvals.park(run.run_id, stage, event.task_token, timeout_s, now=now, summary=summary):
        logger.info("approval already decided; not asking again", extra={"run_id": run.run_id, "stage": stage})
        return {"parked": False, "stage": stage}
    store.update_run(run.run_id, now=now, status=RunStatus.AWAITING_APPROVAL,
                     note=f"{stage} approval requested (waits up to {hours:g} h)")
    publish(Notification(event_type=EventType.APPROVAL_REQUESTED, run_id=run.run_id, dataset=run.dataset.name,
                         version=run.dataset.version, text=summary,
                         approval={"run_id": run.run_id, "stage": stage}),
            settings.notifications_topic_arn, sns)
    logger.info("approval requested", extra={"run_id": run.run_id, "stage": stage, "timeout_s": timeout_s})
    return {"parked": True, "stage": stage}


def approval_closed(event: ApprovalClosed, *, approvals: ApprovalStore, store: Any,
                    now: datetime | None = None) -> dict[str, Any]:
    """The wait ended without approval: record who or what decided; the shapes the ASL continues with."""
    run, stage = event.run, event.stage
    hours = run.approval_timeout_seconds / 3600
    if event.error.error == "States.Timeout":
        why = f"no decision within {hours:g} h (ApprovalTimeoutHours)"
        approvals.close(run.run_id, stage, TIMED_OUT, "timeout", why, now=now)
    item = approvals.get(run.run_id, stage) or {}
    by = str(item.get("decided_by") or ("timeout" if event.error.error == "States.Timeout" else "unknown"))
    status = str(item.get("status") or "")
    if status == TIMED_OUT or event.error.error == "States.Timeout":
        reason = f"{stage} approval timed out: {item.get('reason') or 'no decision in time'}"
    elif status == REJECTED:
        reason = f"{stage} rejected by {by}" + (f": {item['reason']}" if item.get("reason") else "")
    else:  # a rejection whose record is gone: the SendTaskFailure cause says the same
        cause = parse_cause(event.error.cause)
        reason = str(cause.get("message") or event.error.cause or f"{stage} not approved ({event.error.error})")
    store.update_run(run.run_id, now=now, note=reason, approval_decision=status or event.error.error,
                     approval_decided_by=by)
    logger.info("approval not given", extra={"run_id": run.run_id, "stage": stage, "decided_by": by})
    return {"reason": reason, "decided_by": by, "stage": stage,
            "promotion": {"promoted": False, "reason": reason, "run_id": run.run_id}}


def approval_step(event: ApprovalStepEvent, **deps: Any) -> dict[str, Any]:
    step = event.root
    if isinstance(step, ApprovalRequest):
        return request_approval(step, settings=deps["settings"], approvals=deps["approvals"], store=deps["store"],
                                sns=deps["sns"], now=deps.get("now"))
    return approval_closed(step, approvals=deps["approvals"], store=deps["store"], now=deps.get("now"))


# ---------------------------------------------------------------- the decision (Slack or CLI)

def decide(run_id: str, approve: bool, decided_by: str, *, approvals: ApprovalStore, store: Any,
           sfn: TaskCallbacks, sns: Publisher | None = None, topic_arn: str | None = None,
           reason: str | None = None, stage: str | None = None, now: datetime | None = None) -> Decision:
    """Approve or reject the run's pending approval (the first decision wins; later ones are refused)."""
    items = approvals.of_run(run_id)
    pending = [i for i in items if i.get("status") == PENDING and (stage is None or i.get("stage") == stage)]
    if not pending:
        done = [f"{i.get('stage')} {i.get('status')} by {i.get('decided_by')}" for i in items
                if stage is None or i.get("stage") == stage]
        raise ApprovalNotPending(f"run {run_id} has no approval waiting" + (f" ({'; '.join(done)})" if done else
                                 " (it never asked for one, or it does not exist)"))
    item = pending[0]
    which: Stage = item["stage"]
    status = APPROVED if approve else REJECTED
    if not approvals.close(run_id, which, status, decided_by, reason, now=now):
        current = approvals.get(run_id, which) or {}
        raise ApprovalNotPending(f"run {run_id}'s {which} approval was already {current.get('status')} by "
                                 f"{current.get('decided_by')}")
    token = str(item["task_token"])
    try:
        if approve:
            sfn.send_task_success(taskToken=token, output=json.dumps(
                {"decision": APPROVED, "stage": which, "decided_by": decided_by}))
        else:
            sfn.send_task_failure(taskToken=token, error=REJECTED_ERROR,
                                  cause=f"{which} rejected by {decided_by}" + (f": {reason}" if reason else ""))
    except Exception as exc:
        if _code(exc) not in _ENDED_TOKEN_ERRORS:
            raise
        approvals.close(run_id, which, EXPIRED, decided_by, "the wait had already ended", now=now,
                        only_if_pending=False)
        raise ApprovalNotPending(f"run {run_id}'s {which} approval wait had already ended (timed out or the run "
                                 "was stopped); nothing changed") from None
    record = store.get_run(run_id) or {}
    if approve:
        store.update_run(run_id, now=now, status=RunStatus.TRAINING if which == "train" else RunStatus.EVALUATING,
                         note=f"{which} approved by {decided_by}")
        if sns is not None and topic_arn:
            then = "its training job starts now" if which == "train" else "it is promoted now"
            publish(Notification(event_type=EventType.APPROVED, run_id=run_id, dataset=record.get("dataset"),
                                 version=record.get("dataset_version"),
                                 text=f"{which.capitalize()} of run {run_id} approved by {decided_by}; {then}."),
                    topic_arn, sns)
    logger.info("approval decided", extra={"run_id": run_id, "stage": which, "decision": status, "by": decided_by})
    return Decision(run_id=run_id, stage=which, decision=status, decided_by=decided_by, reason=reason,
                    dataset=record.get("dataset"))
