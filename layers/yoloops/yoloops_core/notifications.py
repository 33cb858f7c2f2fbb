"""The notification message every outcome publishes to the SNS topic (rendered for Slack downstream)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import BaseModel, Field

from yoloops_core.models import EventType


class Notification(BaseModel):
    event_type: EventType
    run_id: str | None = None
    dataset: str | None = None
    version: str | None = None
    text: str  # readable one-paragraph summary (email subscribers see this)
    metrics: dict[str, float] = Field(default_factory=dict)
    delta: dict[str, float] = Field(default_factory=dict)  # challenger - champion per metric
    attempts: int | None = None
    interruptions: int | None = None
    duration_s: float | None = None
    cost_usd: float | None = None
    spot_savings_pct: float | None = None  # 100 x (1 - billable / training seconds) over the run's attempts
    links: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None
    report: dict[str, Any] | None = None
    # A finished run's verdict (yoloops_core.verdict_report.compact_verdict): table, rules, notes, data diff.
    verdict: dict[str, Any] | None = None
    base_weights: str | None = None  # S3 key of the .pt the run started from, or "scratch:<model yaml>"
    image_uri: str | None = None  # the training image, repo@sha256:... when CheckImage pinned it
    # approval.requested: {"run_id", "stage"}, what the Approve / Reject buttons send back.
    approval: dict[str, str] | None = None

    @property
    def subject(self) -> str:
        # SNS subjects: ASCII, no newlines, < 100 chars.
        who = self.run_id or self.dataset or "yoloops"
        return f"[yoloops] {self.event_type.value} {who}"[:99].encode("ascii", "replace").decode()


class Publisher(Protocol):
    def publish(self, **kwargs: Any) -> dict[str, Any]: ...


def publish(notification: Notification, topic_arn: str, sns: Publisher) -> str:
    """Publish one notification; returns the SNS message id. Errors raise (the caller's retry/DLQ)."""
    response = sns.publish(
        TopicArn=topic_arn,
        Subject=notification.subject,
        Message=json.dumps(notification.model_dump(mode="json", exclude_none=True)),
        MessageAttributes={"event_type": {"DataType": "String", "StringValue": notification.event_type.value}},
    )
    return response["MessageId"]
