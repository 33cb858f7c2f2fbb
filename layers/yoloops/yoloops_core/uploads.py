"""Uploads as people make them: S3 events (batched through SQS) -> upload sessions -> one run per new content.

    what lands                                   session prefix                 closes
    datasets/<n>/<v>/... (v not a layout dir)    datasets/<n>/<v>/              manifest.json at once, else quiet
    datasets/<n>/... (images/, train/, a yaml)   datasets/<n>/                  manifest.json at once, else quiet
    datasets/<n>/<v>.zip                         that key                       at once
    datasets/<n>.zip                             that key                       at once
    datasets/<file> (not a zip), outside         -                              logged and ignored

Closing snapshots the listing: version = the folder name, or a short hash of the sorted (key, size,
ETag) listing; the run id carries that content hash too. The same content as the session's last run
starts nothing and posts "unchanged"; a name that cannot be a run posts "rejected". The workflow's
ValidateDataset reports everything else (no YAML, unsupported layout, broken labels).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ValidationError

from yoloops_core.models import (
    DATASETS_PREFIX,
    NAME_PATTERN,
    DatasetRef,
    EventType,
    RunRequest,
    Trigger,
    describe_validation_error,
    run_id_for_dataset,
    utcnow,
)
from yoloops_core.notifications import Notification
from yoloops_core.run_ids import HASH_LENGTH, MANIFEST_NAME, ListingDigest
from yoloops_core.runs import StartResult
from yoloops_core.s3_trigger import S3Record
from yoloops_core.upload_sessions import CLOSED, LISTING_MARGIN, Session, SessionStore, iso_ms

logger = Logger(child=True)

# Second-level folders that are part of a dataset's layout, never a version name.
LAYOUT_DIRS = frozenset({"images", "labels", "train", "valid", "val", "validation", "test", "annotations"})
DATASET_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".txt", ".yaml", ".yml", ".zip")
CHECK_KEY = "yoloops_check"
MAX_DELAY_SECONDS = 900  # SQS DelaySeconds limit


@dataclass(frozen=True)
class Target:
    """Which upload session a key belongs to."""

    prefix: str  # datasets/<n>/<v>/, datasets/<n>/, or a zip key
    dataset: str
    version: str | None  # None: unversioned (content-named at close)
    kind: str  # "dir" | "zip"
    marker: bool  # manifest.json or the zip itself: close at once


def classify(key: str) -> Target | str:
    """The session of `key`, or the reason it is ignored (a stray file)."""
    if not key.startswith(DATASETS_PREFIX):
        return f"{key!r} is outside {DATASETS_PREFIX}"
    if key.endswith("/"):
        return f"{key!r} is a folder placeholder"
    parts = key[len(DATASETS_PREFIX):].split("/")
    if len(parts) == 1:
        if parts[0].lower().endswith(".zip"):
            return Target(key, parts[0][:-4], None, "zip", True)
        return f"{key!r} is a file directly under {DATASETS_PREFIX} (upload into {DATASETS_PREFIX}<name>/)"
    name = parts[0]
    if len(parts) == 2 and parts[1].lower().endswith(".zip"):
        return Target(key, name, parts[1][:-4], "zip", True)
    if len(parts) >= 3 and parts[1].lower() not in LAYOUT_DIRS:
        version = parts[1]
        return Target(f"{DATASETS_PREFIX}{name}/{version}/", name, version, "dir",
                      len(parts) == 3 and parts[2] == MANIFEST_NAME)
    return Target(f"{DATASETS_PREFIX}{name}/", name, None, "dir", len(parts) == 2 and parts[1] == MANIFEST_NAME)


def name_problem(target: Target) -> str | None:
    bad = [f"{what} {value!r}" for what, value in (("dataset name", target.dataset), ("version", target.version))
           if value is not None and not re.fullmatch(NAME_PATTERN, value)]
    if not bad:
        return None
    return (f"{' and '.join(bad)} must match {NAME_PATTERN} (letters, digits, '.', '_', '-'; start with a "
            "letter or digit; at most 63 characters)")


# ---------------------------------------------------------------- collaborators

class Lister(Protocol):
    def __call__(self, prefix: str) -> list[tuple[str, int, str]]: ...


@dataclass
class UploadDeps:
    sessions: SessionStore
    list_prefix: Lister  # prefix -> [(key, size, etag)] as S3 lists it now
    send_checks: Callable[[list[dict[str, Any]], int], None]  # (check bodies, delay seconds)
    start: Callable[[RunRequest, str], StartResult]
    notify: Callable[[Notification], Any]
    record_version: Callable[[DatasetRef, str], None]
    quiet_seconds: int = 120
    bucket: str | None = None
    now: Callable[[], datetime] = utcnow
    # (prefix, continuation token) -> (one page of (key, size, etag), next token or None); None: list_prefix
    list_page: Callable[[str, str | None], tuple[list[tuple[str, int, str]], str | None]] | None = None
    time_left: Callable[[], float] = lambda: float("inf")  # seconds this invocation has left
    listing_margin_s: float = 20.0  # stop listing with this much time left; a delayed check carries on
    start_tries: int = 3  # StartExecution attempts in one invocation before SQS redelivers
    sleep: Callable[[float], None] = time.sleep


class _SqsRecord(BaseModel):
    messageId: str
    body: str
    attributes: dict[str, Any] = {}


@dataclass
class _Group:
    target: Target
    objects: int = 0
    last_event: datetime | None = None
    marker: bool = False
    message_ids: set[str] = field(default_factory=set)
    redelivered: bool = False  # SQS handed one of its messages over before (a failed earlier attempt)


# ---------------------------------------------------------------- the batch

def handle_batch(event: Any, deps: UploadDeps) -> dict[str, Any]:
    """One SQS batch (S3 events and delayed checks) -> `{"batchItemFailures": [...]}`.

    Events are folded per session first, so a batch of 10,000 objects of one sync is one DynamoDB write
    and one delayed check. Bad input is logged and dropped (retrying cannot fix it); AWS errors fail the
    records of that session only (partial batch response), so SQS redelivers them.
    """
    groups: dict[str, _Group] = {}
    checks: list[tuple[str, dict[str, Any], bool]] = []
    for raw in (event or {}).get("Records") or []:
        try:
            record = _SqsRecord.model_validate(raw)
            body = json.loads(record.body)
        except (ValidationError, ValueError) as exc:
            logger.error("SQS record dropped: not JSON from S3 or the trigger", extra={"error": str(exc)[:300]})
            continue
        if isinstance(body, dict) and isinstance(body.get(CHECK_KEY), dict):
            redelivered = int(record.attributes.get("ApproximateReceiveCount", 1) or 1) > 1
            checks.append((record.messageId, body[CHECK_KEY], redelivered))
            continue
        for s3_record in _s3_records(body):
            target = _target_of(s3_record, deps)
            if target is None:
                continue
            group = groups.setdefault(target.prefix, _Group(target))
            group.objects += 1
            group.marker |= target.marker
            group.message_ids.add(record.messageId)
            group.redelivered |= int(record.attributes.get("ApproximateReceiveCount", 1) or 1) > 1
            if group.last_event is None or s3_record.eventTime > group.last_event:
                group.last_event = s3_record.eventTime
    failures: set[str] = set()
    pending: list[dict[str, Any]] = []
    for group in groups.values():
        try:
            check = _touch(group, deps)
            if check is not None:
                pending.append(check)
        except Exception:
            logger.exception("upload session update failed", extra={"prefix": group.target.prefix})
            failures |= group.message_ids
    if pending:
        deps.send_checks(pending, min(deps.quiet_seconds, MAX_DELAY_SECONDS))
    for message_id, check, redelivered in checks:
        try:
            close_session(str(check.get("prefix", "")), int(check.get("generation", -1)), deps, redelivered=redelivered)
        except Exception:
            logger.exception("upload session close failed", extra={"check": check})
            failures.add(message_id)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in sorted(failures)]}


def _s3_records(body: Any) -> list[S3Record]:
    if not isinstance(body, dict) or body.get("Event") == "s3:TestEvent":
        logger.info("not an S3 event notification, ignored", extra={"event": str(body)[:200]})
        return []
    out = []
    for i, raw in enumerate(body.get("Records") or []):
        try:
            out.append(S3Record.model_validate(raw))
        except ValidationError as exc:
            logger.error("S3 record ignored", extra={"reason": describe_validation_error(exc, f"S3 record {i}")})
    return out


def _target_of(record: S3Record, deps: UploadDeps) -> Target | None:
    key = unquote_plus(record.s3.object.key)  # S3 URL-encodes keys in notifications
    log = {"key": key, "event_name": record.eventName}
    if not record.eventName.startswith("ObjectCreated:"):
        logger.info("not an ObjectCreated event, ignored", extra=log)
        return None
    if deps.bucket and record.s3.bucket.name != deps.bucket:
        logger.warning("event for another bucket ignored", extra=log | {"bucket": record.s3.bucket.name})
        return None
    target = classify(key)
    if isinstance(target, str):
        logger.info("stray object ignored", extra=log | {"reason": target})
        return None
    return target


def _touch(group: _Group, deps: UploadDeps) -> dict[str, Any] | None:
    t = group.target
    last_event = group.last_event or deps.now()
    kwargs = {"dataset": t.dataset, "version": t.version, "kind": t.kind, "objects": group.objects,
              "last_event": last_event, "now": deps.now()}
    generation = deps.sessions.touch(t.prefix, **kwargs)
    if generation is None:  # CLOSED: a re-upload reopens it; late or duplicate events of the closed listing do not
        unfinished = deps.sessions.get(t.prefix)
        if unfinished is not None and unfinished.status == CLOSED and not unfinished.done \
                and unfinished.outcome == "start" and group.marker and group.redelivered:
            # A marker's batch redelivered after its run failed to start: start it now (idempotent by name).
            _act(unfinished, deps)
            return None
        reopen_at = _reopen_listing_at(t.prefix, last_event, deps)
        if reopen_at is not None:
            generation = deps.sessions.touch(t.prefix, **kwargs, reopen_listing_at=reopen_at)
    log = {"prefix": t.prefix, "objects": group.objects, "generation": generation}
    if generation is None:
        logger.info("events of objects already in the closed listing ignored", extra=log)
        return None
    if group.marker:
        logger.info("completion marker: closing now", extra=log)
        close_session(t.prefix, generation, deps, marker=True)
        return None
    logger.info("upload session touched", extra=log)
    return {CHECK_KEY: {"prefix": t.prefix, "generation": generation}}


def _reopen_listing_at(prefix: str, last_event: datetime, deps: UploadDeps) -> str | None:
    """The closed session's listing time when these events are a re-upload after it, else None."""
    session = deps.sessions.get(prefix)
    if session is None or session.status != CLOSED or not session.listing_at:
        return None
    listed = datetime.fromisoformat(session.listing_at.replace("Z", "+00:00"))
    if last_event < listed - LISTING_MARGIN:
        return None  # written before the listing started: it is in the snapshot
    if last_event <= listed + LISTING_MARGIN:  # too close to call on clocks: did the content change?
        mine = [(k, n, e) for k, n, e in deps.list_prefix(prefix) if _in_session(k, session)]
        if _digest(mine, session.prefix).hexdigest() == session.content_hash:
            return None
    return session.listing_at


# ---------------------------------------------------------------- closing

def close_session(prefix: str, generation: int, deps: UploadDeps, *, redelivered: bool = False,
                  marker: bool = False) -> str:
    """Close the session if `generation` is still its newest; returns what happened (for logs/tests)."""
    for _ in range(3):
        session = deps.sessions.get(prefix)
        log = {"prefix": prefix, "generation": generation}
        if session is None:
            logger.warning("check for an unknown upload session ignored", extra=log)
            return "unknown"
        if session.status == CLOSED:
            if session.generation == generation and not session.done and redelivered:
                return _act(session, deps)  # the closer that won crashed (or could not start): finish its decision
            return "already closed"
        if session.generation != generation and not marker:
            logger.info("newer objects arrived; a later check closes the session", extra=log)
            return "superseded"
        listed = _list_session(session, deps)
        if listed is None:
            return "listing continues"
        listing_at, digest, has_data = listed
        decision = _decide(session, digest, has_data)
        if deps.sessions.close(session, listing_at=listing_at, now=deps.now(), **decision):
            closed = Session(**{**session.__dict__, "status": CLOSED, "listing_at": iso_ms(listing_at),
                                "content_hash": decision["content_hash"], "outcome": decision["outcome"],
                                "run_id": decision["run_id"], "request": decision["request"]})
            return _act(closed, deps)
        if not marker:
            return "lost race"
        generation = -1  # a marker closes at whatever generation is newest: retry with a fresh read
    return "contended"


def _list_session(session: Session, deps: UploadDeps) -> tuple[datetime, ListingDigest, bool] | None:
    """The session's listing, page by page, resumed from the session item when an earlier invocation ran out
    of time; None when this one runs out too (its progress saved, a check sent to carry on)."""
    prefix = session.prefix
    if deps.list_page is None:  # one call lists it all
        entries = [e for e in deps.list_prefix(prefix) if _in_session(e[0], session)]
        return deps.now(), _digest(entries, prefix), _has_data(entries)
    resume = session.listing_token is not None and session.listing_generation == session.generation
    token = session.listing_token if resume else None
    digest = ListingDigest.from_state(session.listing_state if resume else None)
    has_data = session.listing_data if resume else False
    started = datetime.fromisoformat(session.listing_started_at.replace("Z", "+00:00")) \
        if resume and session.listing_started_at else deps.now()
    pages = 0
    while True:
        page, token = deps.list_page(prefix, token)
        mine = [e for e in page if _in_session(e[0], session)]
        digest.add((k[len(prefix):] or k.rsplit("/", 1)[-1], n, e) for k, n, e in mine)
        has_data = has_data or _has_data(mine)
        pages += 1
        if token is None:
            return started, digest, has_data
        if deps.time_left() < deps.listing_margin_s:
            break
    log = {"prefix": prefix, "generation": session.generation, "objects_so_far": digest.count, "pages": pages}
    if deps.sessions.save_listing(session, token=token, state=digest.state(), has_data=has_data,
                                  started_at=iso_ms(started)):
        deps.send_checks([{CHECK_KEY: {"prefix": prefix, "generation": session.generation}}], 0)
        logger.info("listing carried over to the next check", extra=log)
    else:
        logger.info("listing dropped: newer objects arrived, a later check lists again", extra=log)
    return None


def _has_data(entries: list[tuple[str, int, str]]) -> bool:
    return any(k.lower().endswith(DATASET_SUFFIXES) for k, _, _ in entries)


def _decide(session: Session, digest: ListingDigest, has_data: bool) -> dict[str, Any]:
    target = Target(session.prefix, session.dataset, session.version, session.kind, False)
    content = digest.hexdigest()
    base = {"content_hash": content, "run_id": None, "request": None}
    if not has_data:
        return base | {"outcome": "ignored", "request": {"reason": f"no images, labels, YAML or zip under {session.prefix}"}}
    problem = name_problem(target)
    if problem:
        return base | {"outcome": "rejected", "request": {"reason": problem}}
    if content == session.last_content_hash and session.last_run_id:
        return base | {"outcome": "unchanged", "run_id": session.last_run_id}
    dataset = DatasetRef(name=session.dataset, version=session.version or content[:HASH_LENGTH], format=session.kind,
                         location=None if session.version else session.prefix)
    run_id = run_id_for_dataset(dataset, content)
    detail = {"objects": digest.seen, "content_hash": content, "session_generation": session.generation,
              "first_object_at": session.first_object_at, "last_object_at": session.last_object_at}
    request = RunRequest(dataset=dataset, trigger=Trigger(source="s3", ref=session.prefix[:512], detail=detail))
    return base | {"outcome": "start", "run_id": run_id, "request": request.model_dump(mode="json")}


def _in_session(key: str, session: Session) -> bool:
    if session.kind == "zip":
        return key == session.prefix
    target = classify(key)  # datasets/<n>/ must not take in datasets/<n>/<version>/...
    return isinstance(target, Target) and target.prefix == session.prefix


def _digest(entries: list[tuple[str, int, str]], prefix: str) -> ListingDigest:
    return ListingDigest().add((k[len(prefix):] or k.rsplit("/", 1)[-1], n, e) for k, n, e in entries)


def _act(session: Session, deps: UploadDeps) -> str:
    where = f"s3://{deps.bucket}/{session.prefix}" if deps.bucket else session.prefix
    log = {"prefix": session.prefix, "run_id": session.run_id, "outcome": session.outcome}
    started: tuple[str, str] | None = None
    if session.outcome == "start" and session.request and session.run_id:
        request = RunRequest.model_validate(session.request)
        result = _start(session, request, deps, where)
        deps.record_version(request.dataset, iso_ms(deps.now()))
        started = (session.content_hash or "", session.run_id)
        logger.info("upload complete: run started" if result.started else "upload complete: run already exists",
                    extra=log)
    elif session.outcome == "unchanged":
        deps.notify(Notification(
            event_type=EventType.UNCHANGED, run_id=session.run_id, dataset=session.dataset[:200],
            version=(session.version or "")[:200] or None, reason="unchanged",
            text=f"{where}: unchanged: same content as run {session.run_id}; nothing started."))
        logger.info("upload unchanged", extra=log)
    elif session.outcome == "rejected":
        reason = (session.request or {}).get("reason", "name not allowed")
        deps.notify(Notification(event_type=EventType.REJECTED, dataset=session.dataset[:200],
                                 version=(session.version or "")[:200] or None, reason=reason,
                                 text=f"Dataset upload {where} not started: {reason}"))
        logger.warning("upload rejected", extra=log | {"reason": reason})
    else:
        logger.info("upload holds no dataset files, ignored", extra=log | {"reason": (session.request or {}).get("reason")})
    deps.sessions.mark_done(session.prefix, session.generation, started=started)
    return session.outcome or "ignored"


def _start(session: Session, request: RunRequest, deps: UploadDeps, where: str) -> StartResult:
    """StartExecution, retried here (bounded, jittered); still failing -> the team is told and it raises, so
    SQS redelivers the message and the closed decision is started again (then the uploads DLQ + its alarm).
    The session keeps the decision and never counts its content as started: no "unchanged" for a lost run."""
    assert session.run_id is not None
    for attempt in range(deps.start_tries):
        try:
            return deps.start(request, session.run_id)
        except Exception as exc:
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            error = f"{code or type(exc).__name__}: {str(exc)[:500]}"
            if attempt < deps.start_tries - 1:
                logger.warning("StartExecution failed, retrying", extra={"run_id": session.run_id, "error": error})
                deps.sleep(random.uniform(0.5, 1.0) * 2 ** attempt)
                continue
            failures = deps.sessions.start_failed(session.prefix, session.generation, error)
            deps.notify(Notification(
                event_type=EventType.FAILED, run_id=session.run_id, dataset=session.dataset[:200],
                version=(session.version or "")[:200] or None, reason="run not started",
                text=(f"{where}: upload complete, but run {session.run_id} could not be started ({error}); "
                      f"failure {failures}: the trigger retries it (SQS redelivers it up to 5 times, then it waits "
                      "in the triggers dead-letter queue: `yoloops dlq redrive`).")))
            raise
    raise AssertionError("unreachable")
