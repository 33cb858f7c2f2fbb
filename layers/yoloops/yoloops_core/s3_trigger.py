"""S3 event records (as S3 puts them on the uploads queue) and the complete-versions index.

S3 notifications are at-least-once and one per object: every ObjectCreated under `datasets/` goes to
the uploads queue (NOTIFICATION_EVENTS / NOTIFICATION_PREFIX, kept equal to template.yaml by a test),
and yoloops_core.uploads folds them into upload sessions. Complete versions are indexed here for the
GitHub trigger (a release that names no dataset trains the newest one).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, Field, ValidationError, field_validator

from yoloops_core.models import DatasetRef

logger = Logger(child=True)

# The bucket's notification to the uploads queue: every object-created kind under datasets/.
NOTIFICATION_EVENTS = ("s3:ObjectCreated:*",)
NOTIFICATION_PREFIX = "datasets/"
DATASETS_PK = "DATASETS"


# ---------------------------------------------------------------- event model (S3 -> SQS, eventVersion 2.x)

class _Bucket(BaseModel):
    name: str = Field(min_length=1)


class _Object(BaseModel):
    key: str = Field(min_length=1)
    size: int | None = None
    eTag: str | None = None
    sequencer: str | None = None
    versionId: str | None = None


class _S3(BaseModel):
    bucket: _Bucket
    object: _Object


class S3Record(BaseModel):
    eventVersion: str = Field(pattern=r"^2\.")
    eventSource: Literal["aws:s3"]
    eventTime: datetime
    eventName: str = Field(min_length=1)
    s3: _S3

    @field_validator("eventTime")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:  # naive times are UTC (S3 always sends Z); out-of-range offsets would overflow later
            return value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"eventTime out of range: {exc}") from exc


# ---------------------------------------------------------------- complete versions (RunsTable, pk=DATASETS)

def record_complete_version(table: str, dataset: DatasetRef, completed_at: str, *, ddb: Any = None) -> None:
    """Remember a complete dataset version (idempotent: a duplicate event writes the same item)."""
    ddb = ddb or _ddb()
    ddb.put_item(TableName=table, Item={
        "pk": {"S": DATASETS_PK},
        "sk": {"S": f"{completed_at}#{dataset.name}#{dataset.version}"},
        "name": {"S": dataset.name},
        "version": {"S": dataset.version},
        "format": {"S": dataset.format},
        "completed_at": {"S": completed_at},
        **({"location": {"S": dataset.location}} if dataset.location else {}),
    })


def latest_complete_version(table: str, *, ddb: Any = None, name: str | None = None,
                            version: str | None = None) -> DatasetRef | None:
    """The most recently completed dataset version (optionally of one dataset, or one exact version).

    The GitHub trigger uses this for a release that names no dataset (or names one without a version).
    """
    ddb = ddb or _ddb()
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": DATASETS_PK}},
        "ScanIndexForward": False,  # newest completion first
    }
    filters, names = [], {}
    for attr, value in (("name", name), ("version", version)):
        if value is not None:
            filters.append(f"#{attr} = :{attr}")
            names[f"#{attr}"] = attr
            kwargs["ExpressionAttributeValues"][f":{attr}"] = {"S": value}
    if filters:
        kwargs["FilterExpression"] = " AND ".join(filters)
        kwargs["ExpressionAttributeNames"] = names
    else:
        kwargs["Limit"] = 1  # the newest item is the answer (unless it is unusable: then the next page)
    for page in ddb.get_paginator("query").paginate(**kwargs):
        for item in page.get("Items", []):
            try:
                return DatasetRef(name=item["name"]["S"], version=item["version"]["S"],
                                  format=item.get("format", {}).get("S", "dir"),
                                  location=item.get("location", {}).get("S"))
            except (KeyError, ValidationError):
                logger.warning("unusable dataset item skipped", extra={"sk": item.get("sk", {}).get("S")})
    return None


class DynamoVersionStore:
    def __init__(self, table: str, ddb: Any = None) -> None:
        self.table = table
        self.ddb = ddb

    def record(self, dataset: DatasetRef, completed_at: str) -> None:
        record_complete_version(self.table, dataset, completed_at, ddb=self.ddb)


def _ddb() -> Any:
    from yoloops_core.aws import client

    return client("dynamodb")
