"""Upload sessions in the RunsTable: `pk=SESSION#<prefix>`, `sk=SESSION` (docs/architecture.md).

A session gathers the objects of one upload (`datasets/<name>/[<version>/]`, or one zip key). Every batch
of S3 events that touches it bumps `generation`; a delayed check carrying that generation may close it
only while the generation is unchanged (no newer object), by a conditional write, so concurrent
closers and duplicate checks start at most one run. Events older than the closed listing were in that
listing and are ignored; newer ones reopen the session (a re-upload).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from yoloops_core.models import iso

SESSION_SK = "SESSION"
OPEN, CLOSED = "OPEN", "CLOSED"
# S3's eventTime is when S3 finished the write and listings are strongly consistent, so an object whose
# event is older than the closed listing's start was in that listing; one newer than it is a re-upload.
# Within this margin of the listing (clock skew) the trigger lists again and compares content hashes.
LISTING_MARGIN = timedelta(seconds=2)


def iso_ms(ts: datetime) -> str:
    return iso(ts).removesuffix("Z") + f".{ts.microsecond // 1000:03d}Z"


@dataclass
class Session:
    prefix: str
    status: str
    generation: int
    dataset: str = ""
    version: str | None = None
    kind: str = "dir"
    objects: int = 0
    first_object_at: str | None = None
    last_object_at: str | None = None
    listing_at: str | None = None
    content_hash: str | None = None
    run_id: str | None = None
    outcome: str | None = None
    request: dict[str, Any] | None = None
    done: bool = False
    last_content_hash: str | None = None
    last_run_id: str | None = None
    # A closing listing carried over to the next invocation (a large prefix): where it stopped, the
    # ListingDigest state so far, whether dataset files were seen, when it started, for which generation.
    listing_token: str | None = None
    listing_state: str | None = None
    listing_data: bool = False
    listing_started_at: str | None = None
    listing_generation: int = 0
    start_failures: int = 0  # StartExecution attempts that failed for this closed decision
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Session:
        def s(name: str) -> str | None:
            return item[name]["S"] if name in item and "S" in item[name] else None

        def n(name: str) -> int:
            return int(item[name]["N"]) if name in item and "N" in item[name] else 0

        request = s("request")
        return cls(prefix=s("prefix") or "", status=s("status") or OPEN, generation=n("generation"),
                   dataset=s("dataset") or "", version=s("version"), kind=s("kind") or "dir",
                   objects=n("objects"), first_object_at=s("first_object_at"), last_object_at=s("last_object_at"),
                   listing_at=s("listing_at"), content_hash=s("content_hash"), run_id=s("run_id"),
                   outcome=s("outcome"), request=json.loads(request) if request else None,
                   done=bool(item.get("done", {}).get("BOOL")), last_content_hash=s("last_content_hash"),
                   last_run_id=s("last_run_id"), listing_token=s("listing_token"), listing_state=s("listing_state"),
                   listing_data=bool(item.get("listing_data", {}).get("BOOL")),
                   listing_started_at=s("listing_started_at"), listing_generation=n("listing_generation"),
                   start_failures=n("start_failures"))


def _is_conditional_failure(exc: Exception) -> bool:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class SessionStore:
    """DynamoDB adapter (low-level client: the same in Lambda, the CLI and tests)."""

    def __init__(self, table: str, ddb: Any) -> None:
        self.table = table
        self.ddb = ddb

    def _key(self, prefix: str) -> dict[str, Any]:
        return {"pk": {"S": f"SESSION#{prefix}"}, "sk": {"S": SESSION_SK}}

    def get(self, prefix: str) -> Session | None:
        item = self.ddb.get_item(TableName=self.table, Key=self._key(prefix), ConsistentRead=True).get("Item")
        return Session.from_item(item) if item else None

    def touch(self, prefix: str, *, dataset: str, version: str | None, kind: str, objects: int,
              last_event: datetime, now: datetime, reopen_listing_at: str | None = None) -> int | None:
        """Record `objects` new events (newest `last_event`) in the OPEN (or new) session: its new generation,
        or None when the session is CLOSED. With `reopen_listing_at` (the closed listing's time, as read),
        a CLOSED session is reopened instead: a re-upload after the close."""
        t = iso_ms(last_event)
        common = {":open": {"S": OPEN}, ":one": {"N": "1"}, ":n": {"N": str(objects)}, ":t": {"S": t},
                  ":now": {"S": iso_ms(now)}, ":prefix": {"S": prefix}, ":ds": {"S": dataset}, ":kind": {"S": kind}}
        sets = "#s = :open, prefix = :prefix, dataset = :ds, kind = :kind, touched_at = :now, last_object_at = :t"
        if version is not None:
            common[":v"] = {"S": version}
            sets += ", version = :v"
        if reopen_listing_at is not None:
            return self._reopen(prefix, sets, common, reopen_listing_at)
        try:
            out = self.ddb.update_item(
                TableName=self.table, Key=self._key(prefix),
                UpdateExpression=f"SET {sets}, first_object_at = if_not_exists(first_object_at, :t) "
                                 "ADD generation :one, objects :n",
                ConditionExpression="attribute_not_exists(pk) OR #s = :open",
                ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues=common,
                ReturnValues="UPDATED_NEW")
            return int(out["Attributes"]["generation"]["N"])
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise
            return None

    def _reopen(self, prefix: str, sets: str, common: dict[str, Any], listing_at: str) -> int | None:
        try:  # only the close that was read: a concurrent reopen (or a newer close) wins instead
            out = self.ddb.update_item(
                TableName=self.table, Key=self._key(prefix),
                UpdateExpression=f"SET {sets}, first_object_at = :t, objects = :n, done = :no "
                                 "REMOVE outcome, run_id, #req ADD generation :one",
                ConditionExpression="#s = :closed AND listing_at = :la",
                ExpressionAttributeNames={"#s": "status", "#req": "request"},
                ExpressionAttributeValues={**common, ":closed": {"S": CLOSED}, ":no": {"BOOL": False},
                                           ":la": {"S": listing_at}},
                ReturnValues="UPDATED_NEW")
            return int(out["Attributes"]["generation"]["N"])
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise
            return None

    def close(self, session: Session, *, listing_at: datetime, content_hash: str, outcome: str,
              run_id: str | None, request: dict[str, Any] | None, now: datetime) -> bool:
        """OPEN at `session.generation` -> CLOSED with the decision; False when another closer or a newer
        object got there first (nothing to do then)."""
        values: dict[str, Any] = {
            ":closed": {"S": CLOSED}, ":open": {"S": OPEN}, ":g": {"N": str(session.generation)},
            ":la": {"S": iso_ms(listing_at)}, ":h": {"S": content_hash}, ":o": {"S": outcome},
            ":now": {"S": iso_ms(now)}, ":no": {"BOOL": False},
        }
        sets = ["#s = :closed", "listing_at = :la", "content_hash = :h", "outcome = :o", "closed_at = :now",
                "done = :no"]
        if run_id:
            values[":r"] = {"S": run_id}
            sets.append("run_id = :r")
        if request is not None:
            values[":req"] = {"S": json.dumps(request, sort_keys=True)}
            sets.append("#req = :req")
        # last_content_hash / last_run_id move only once the run really started (mark_done): a start that
        # failed must never make the same bytes "unchanged" later.
        try:
            self.ddb.update_item(
                TableName=self.table, Key=self._key(session.prefix),
                UpdateExpression="SET " + ", ".join(sets) + " REMOVE listing_token, listing_state, listing_data, "
                                 "listing_started_at, listing_generation, start_failures",
                ConditionExpression="#s = :open AND generation = :g",
                ExpressionAttributeNames={"#s": "status", **({"#req": "request"} if request is not None else {})},
                ExpressionAttributeValues=values)
            return True
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise

    def save_listing(self, session: Session, *, token: str, state: str, has_data: bool, started_at: str) -> bool:
        """Keep a closing listing's progress for the next invocation; False when a newer object (generation)
        or another closer got there first (the listing is then not worth continuing)."""
        try:
            self.ddb.update_item(
                TableName=self.table, Key=self._key(session.prefix),
                UpdateExpression="SET listing_token = :t, listing_state = :st, listing_data = :d, "
                                 "listing_started_at = :sa, listing_generation = :g",
                ConditionExpression="#s = :open AND generation = :g",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":t": {"S": token}, ":st": {"S": state}, ":d": {"BOOL": has_data},
                                           ":sa": {"S": started_at}, ":g": {"N": str(session.generation)},
                                           ":open": {"S": OPEN}})
            return True
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise

    def start_failed(self, prefix: str, generation: int, error: str) -> int:
        """Count a failed StartExecution of the closed decision; the count so far."""
        out = self.ddb.update_item(
            TableName=self.table, Key=self._key(prefix),
            UpdateExpression="SET last_start_error = :e ADD start_failures :one",
            ExpressionAttributeValues={":e": {"S": error[:1000]}, ":one": {"N": "1"}}, ReturnValues="UPDATED_NEW")
        return int(out["Attributes"]["start_failures"]["N"])

    def mark_done(self, prefix: str, generation: int, started: tuple[str, str] | None = None) -> None:
        """The decision was acted on; `started` = (content hash, run id) of a run that really started."""
        sets, values = "done = :yes", {":yes": {"BOOL": True}, ":g": {"N": str(generation)}}
        if started is not None:
            sets += ", last_content_hash = :h, last_run_id = :r"
            values |= {":h": {"S": started[0]}, ":r": {"S": started[1]}}
        try:
            self.ddb.update_item(
                TableName=self.table, Key=self._key(prefix), UpdateExpression="SET " + sets,
                ConditionExpression="generation = :g", ExpressionAttributeValues=values)
        except Exception as exc:  # reopened meanwhile: that session is a new upload
            if not _is_conditional_failure(exc):
                raise
