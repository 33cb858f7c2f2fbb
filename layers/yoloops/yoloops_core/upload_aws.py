"""The S3 trigger's real collaborators (yoloops_core.uploads.UploadDeps): S3 listing by pages, SQS delayed
checks, Step Functions, SNS, the sessions in DynamoDB."""

from __future__ import annotations

import json
from typing import Any

from yoloops_core.upload_sessions import SessionStore
from yoloops_core.uploads import UploadDeps


def aws_deps(context: Any = None) -> UploadDeps:
    """The handler's wiring from settings (S3 listing, SQS checks, Step Functions, SNS, DynamoDB); `context`
    (the Lambda context) bounds each invocation's listing by the time it has left."""
    from yoloops_core import aws
    from yoloops_core.config import ConfigError, get_settings
    from yoloops_core.notifications import publish
    from yoloops_core.runs import start_run
    from yoloops_core.s3_trigger import record_complete_version

    settings = get_settings()
    missing = [n.upper() for n in ("state_machine_arn", "uploads_queue_url") if not getattr(settings, n)]
    if missing:
        raise ConfigError(f"the S3 trigger needs {', '.join(missing)}")
    bucket = settings.artifacts_bucket

    def list_prefix(prefix: str) -> list[tuple[str, int, str]]:
        out = []
        for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [(o["Key"], int(o["Size"]), str(o.get("ETag", "")).strip('"')) for o in page.get("Contents", [])]
        return out

    def list_page(prefix: str, token: str | None) -> tuple[list[tuple[str, int, str]], str | None]:
        kwargs = {"Bucket": bucket, "Prefix": prefix} | ({"ContinuationToken": token} if token else {})
        page = aws.client("s3").list_objects_v2(**kwargs)
        entries = [(o["Key"], int(o["Size"]), str(o.get("ETag", "")).strip('"')) for o in page.get("Contents", [])]
        return entries, page.get("NextContinuationToken") if page.get("IsTruncated") else None

    def send_checks(bodies: list[dict[str, Any]], delay: int) -> None:
        sqs = aws.client("sqs")
        for i in range(0, len(bodies), 10):  # SendMessageBatch takes 10 entries
            entries = [{"Id": str(n), "MessageBody": json.dumps(b), "DelaySeconds": delay}
                       for n, b in enumerate(bodies[i:i + 10])]
            failed = sqs.send_message_batch(QueueUrl=settings.uploads_queue_url, Entries=entries).get("Failed")
            if failed:
                raise RuntimeError(f"SQS refused upload checks: {failed}")

    return UploadDeps(
        sessions=SessionStore(settings.runs_table, aws.client("dynamodb")),
        list_prefix=list_prefix,
        send_checks=send_checks,
        start=lambda req, run_id: start_run(req, run_id, settings.state_machine_arn, aws.client("stepfunctions")),
        notify=lambda n: publish(n, settings.notifications_topic_arn, aws.client("sns")),
        record_version=lambda ds, at: record_complete_version(settings.runs_table, ds, at, ddb=aws.client("dynamodb")),
        quiet_seconds=settings.upload_quiet_seconds,
        bucket=bucket,
        list_page=list_page,
        time_left=(lambda: context.get_remaining_time_in_millis() / 1000.0) if context is not None
        else (lambda: float("inf")),
    )
