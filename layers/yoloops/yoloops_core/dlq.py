"""Dead-letter queues: what failed (list) and sending it again (redrive). Used by `yoloops dlq list|redrive`.

What lands in a yoloops DLQ, and where a redrive sends it:
- Lambda async failures (SlackNotifier, TrainingEvents, Reconcile): the original event as the body plus
  RequestID/ErrorCode/ErrorMessage attributes -> the function is invoked again asynchronously with that
  event (for the Slack notifier that re-delivers to Slack only; re-publishing to the topic would repeat it
  to every other subscriber);
- EventBridge target failures: the event plus ERROR_CODE/ERROR_MESSAGE/RULE_ARN/TARGET_ARN -> TARGET_ARN;
- messages SQS moved from a source queue after maxReceiveCount (UploadsQueue): no error attributes ->
  sent back to that source queue (one by one: the DLQ is shared, so SQS's StartMessageMoveTask, which moves
  a whole queue, would push Lambda events into the uploads queue; moto 5.2.5 lacks it as well).
A message is deleted from the DLQ only after its redrive call succeeded; a redriven event that fails
again comes back to the DLQ through the same path (and fires the alarm again).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

LAMBDA_ERROR_ATTRS = ("ErrorMessage", "ErrorCode", "RequestID")
EVENTBRIDGE_ERROR_ATTRS = ("ERROR_MESSAGE", "ERROR_CODE", "TARGET_ARN", "RULE_ARN")
# detail-type -> the function kind that consumes it (keys of `targets` given to redrive()).
DETAIL_TYPE_TARGETS = {
    "SageMaker Training Job State Change": "training-events",
    "Step Functions Execution Status Change": "reconcile",
}


@dataclass
class DeadLetter:
    queue: str
    message_id: str
    sent_at: str | None
    receive_count: int
    kind: str  # slack-notifier | release-writeback | training-events | reconcile | eventbridge-target | source-queue | unknown
    summary: str
    error: str | None
    target: str | None = None  # function name/ARN or source queue URL, when known
    body: Any = None
    attributes: dict[str, str] = field(default_factory=dict)
    receipt_handle: str = field(default="", repr=False)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("receipt_handle")
        return out


def _attrs(message: dict[str, Any]) -> dict[str, str]:
    return {k: str(v.get("StringValue", "")) for k, v in (message.get("MessageAttributes") or {}).items()}


# A queue only one SNS subscriber dead-letters into: its letters go back to that function (by `yoloops dlq`
# name: the `<Name>DlqUrl` output lower-cased), not to the Slack notifier, which gets the same SNS events.
QUEUE_KINDS = {"releasewriteback": "release-writeback"}


def _iso_ms(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def classify(body: Any, attrs: dict[str, str]) -> tuple[str, str]:
    """(kind, one-line summary of the original event)."""
    if isinstance(body, dict) and isinstance(body.get("Records"), list) and body["Records"]:
        first = body["Records"][0] if isinstance(body["Records"][0], dict) else {}
        if first.get("EventSource") == "aws:sns" or "Sns" in first:
            parts = []
            for rec in body["Records"][:3]:
                sns = rec.get("Sns") or {}
                try:
                    note = json.loads(sns.get("Message") or "")
                except ValueError:
                    note = None
                if isinstance(note, dict) and "event_type" in note:
                    parts.append(f"{note.get('event_type')} {note.get('run_id') or note.get('dataset') or ''}".strip())
                else:
                    parts.append(str(sns.get("Subject") or sns.get("Message") or "")[:80])
            return "slack-notifier", "notification: " + "; ".join(parts)
        if first.get("eventSource") == "aws:s3":
            keys = [f"s3://{r.get('s3', {}).get('bucket', {}).get('name')}/{r.get('s3', {}).get('object', {}).get('key')}"
                    for r in body["Records"][:3]]
            more = f" (+{len(body['Records']) - 3})" if len(body["Records"]) > 3 else ""
            kind = "source-queue" if not any(a in attrs for a in LAMBDA_ERROR_ATTRS) else "unknown"
            return kind, "S3 event: " + ", ".join(keys) + more
    if isinstance(body, dict) and "detail-type" in body:
        detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
        dtype = str(body["detail-type"])
        if dtype == "SageMaker Training Job State Change":
            summary = (f"training job {detail.get('TrainingJobName')}: {detail.get('TrainingJobStatus')}"
                       f"/{detail.get('SecondaryStatus')}")
        elif dtype == "Step Functions Execution Status Change":
            summary = f"execution {detail.get('name')}: {detail.get('status')}"
        else:
            summary = f"{dtype} from {body.get('source')}"
        if "TARGET_ARN" in attrs:
            return "eventbridge-target", summary
        return DETAIL_TYPE_TARGETS.get(dtype, "unknown"), summary
    if not any(a in attrs for a in LAMBDA_ERROR_ATTRS + EVENTBRIDGE_ERROR_ATTRS):
        return "source-queue", "queue message: " + (json.dumps(body) if not isinstance(body, str) else body)[:120]
    return "unknown", (json.dumps(body) if not isinstance(body, str) else body)[:120]


def _error(attrs: dict[str, str]) -> str | None:
    if attrs.get("ErrorMessage"):
        return attrs["ErrorMessage"]
    if attrs.get("ERROR_CODE") or attrs.get("ERROR_MESSAGE"):
        return f"{attrs.get('ERROR_CODE', '')}: {attrs.get('ERROR_MESSAGE', '')}".strip(": ")
    return None


def _receive_all(sqs: Any, queue_url: str, limit: int, hold_seconds: int) -> list[dict[str, Any]]:
    """Every message (up to `limit`), each received once and held invisible for `hold_seconds`."""
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < limit:
        page = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, limit - len(seen)),
                                   VisibilityTimeout=hold_seconds, WaitTimeSeconds=0,
                                   AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages") or []
        fresh = [m for m in page if m["MessageId"] not in seen]
        if not fresh:
            break
        seen.update({m["MessageId"]: m for m in fresh})
    return list(seen.values())


def _release(sqs: Any, queue_url: str, letters: list[DeadLetter]) -> None:
    """Make held messages visible again at once (listing must not hide them from the next command)."""
    for i in range(0, len(letters), 10):
        entries = [{"Id": str(n), "ReceiptHandle": d.receipt_handle, "VisibilityTimeout": 0}
                   for n, d in enumerate(letters[i:i + 10])]
        if entries:
            sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def read(sqs: Any, queue: str, queue_url: str, limit: int = 100, hold_seconds: int = 60,
         release: bool = True) -> list[DeadLetter]:
    """The DLQ's messages, oldest first, described; `release=False` keeps them held (for a redrive)."""
    letters = []
    for m in _receive_all(sqs, queue_url, limit, hold_seconds):
        try:
            body: Any = json.loads(m.get("Body") or "")
        except ValueError:
            body = m.get("Body")
        attrs = _attrs(m)
        kind, summary = classify(body, attrs)
        if kind == "slack-notifier" and queue in QUEUE_KINDS:  # SNS subscribers other than Slack's own queue
            kind = QUEUE_KINDS[queue]
        sysattrs = m.get("Attributes") or {}
        letters.append(DeadLetter(
            queue=queue, message_id=m["MessageId"], sent_at=_iso_ms(sysattrs.get("SentTimestamp")),
            receive_count=int(sysattrs.get("ApproximateReceiveCount") or 0), kind=kind, summary=summary,
            error=_error(attrs), target=attrs.get("TARGET_ARN"), body=body, attributes=attrs,
            receipt_handle=m["ReceiptHandle"]))
    letters.sort(key=lambda d: d.sent_at or "")
    if release:
        _release(sqs, queue_url, letters)
    return letters


@dataclass
class RedriveResult:
    redriven: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def redrive(sqs: Any, lambda_client: Any, queue: str, queue_url: str, targets: dict[str, str],
            message_ids: set[str] | None = None, limit: int = 100) -> RedriveResult:
    """Send each dead letter (or those in `message_ids`) to where it was going; delete it once sent.

    `targets`: kind -> function name (slack-notifier, training-events, reconcile). Messages with no known
    destination stay in the queue and are reported as skipped, with the reason."""
    letters = read(sqs, queue, queue_url, limit=limit, release=False)
    sources = sqs.list_dead_letter_source_queues(QueueUrl=queue_url).get("queueUrls") or []
    result = RedriveResult()
    done: set[str] = set()
    try:
        for d in letters:
            if message_ids is not None and d.message_id not in message_ids:
                continue
            destination = _send_back(sqs, lambda_client, d, sources, targets, result)
            if destination is None:
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=d.receipt_handle)
            done.add(d.message_id)
            result.redriven.append({**_brief(d), "to": destination})
    finally:  # whatever was not redriven (skipped, filtered out, or after an error) is visible again at once
        _release(sqs, queue_url, [d for d in letters if d.message_id not in done])
    return result


def _send_back(sqs: Any, lambda_client: Any, d: DeadLetter, sources: list[str], targets: dict[str, str],
               result: RedriveResult) -> str | None:
    raw = d.body if isinstance(d.body, str) else json.dumps(d.body)
    if d.kind == "source-queue":
        if len(sources) != 1:
            result.skipped.append({**_brief(d), "reason": f"{len(sources)} source queues dead-letter here; "
                                   "cannot tell which one this message came from"})
            return None
        attrs = {k: {"DataType": "String", "StringValue": v} for k, v in d.attributes.items() if v}
        sqs.send_message(QueueUrl=sources[0], MessageBody=raw, **({"MessageAttributes": attrs} if attrs else {}))
        return sources[0]
    destination = d.target if d.kind == "eventbridge-target" else targets.get(d.kind)
    if not destination:
        result.skipped.append({**_brief(d), "reason": f"no function known for a {d.kind} message"})
        return None
    lambda_client.invoke(FunctionName=destination, InvocationType="Event", Payload=raw.encode())
    return destination


def _brief(d: DeadLetter) -> dict[str, Any]:
    return {"queue": d.queue, "message_id": d.message_id, "kind": d.kind, "summary": d.summary}
