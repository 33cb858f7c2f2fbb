"""GitHub release webhook: authenticate, decide, start at most one run per release.

Order matters and is part of the contract:
  envelope -> body size (413) -> HMAC of the raw bytes (401) -> JSON (400) -> event type
  (ping 200, others 204) -> release action/draft/prerelease (204) -> payload shape and the
  optional ```yaml block (422) -> dataset lookup (422) -> start, once per delivery and once per
  release (202).
Nothing is parsed before the signature is checked, so unauthenticated input only ever reaches
`hmac`. Ignored deliveries answer 204 with the reason in the `X-Yoloops-Reason` header (a 204
cannot carry a body); GitHub's delivery log shows response headers.

A malformed yaml block or a release with no dataset to train is the releaser's mistake: the
webhook answers 422 and publishes a `dataset.rejected` notification, because nobody reads
GitHub's delivery log and a release that silently trains nothing would go unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from yoloops_core.hyperparameters import TrainingHyperparameters
from yoloops_core.logs import correlate
from yoloops_core.models import (
    DatasetRef,
    EventType,
    InvalidInput,
    RunRequest,
    Trigger,
    describe_validation_error,
    run_id_for_release,
)
from yoloops_core.notifications import Notification
from yoloops_core.runs import StartResult
from yoloops_core.webhook_guards import release_age_problem, release_key, usable_secret

logger = Logger(child=True)

SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
REASON_HEADER = "x-yoloops-reason"
MAX_YAML_BLOCK_BYTES = 16_384
MAX_RELEASE_RETRIES = 20  # re-publishes of one release after ImageNotFound (run ids end -r2 ... -r20)
# The first fenced block tagged yaml/yml in the release notes. Opening and closing fences are found
# with two linear searches (one lazy regex over both is quadratic on many unclosed openings).
_YAML_OPEN = re.compile(r"^[ \t]*```[ \t]*ya?ml[ \t]*\r?$\n?", re.MULTILINE)
_FENCE_CLOSE = re.compile(r"^[ \t]*```[ \t]*\r?$", re.MULTILINE)


# ---------------------------------------------------------------- responses

@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    body: dict[str, Any] | None = None
    reason: str | None = None

    def to_lambda(self) -> dict[str, Any]:
        """The Function URL (payload 2.0) response."""
        headers = {"content-type": "application/json"}
        if self.reason:
            # Header values must be one printable line.
            headers[REASON_HEADER] = re.sub(r"[^\x20-\x7e]", "?", self.reason)[:500]
        out: dict[str, Any] = {"statusCode": self.status_code, "headers": headers}
        if self.status_code != 204:
            payload = dict(self.body or {})
            if self.reason:
                payload.setdefault("reason", self.reason)
            out["body"] = json.dumps(payload)
        return out


def _reject(status: int, reason: str) -> WebhookResponse:
    logger.info("webhook rejected", extra={"status": status, "reason": reason})
    return WebhookResponse(status, {"error": reason}, reason)


def _ignore(reason: str) -> WebhookResponse:
    logger.info("webhook ignored", extra={"reason": reason})
    return WebhookResponse(204, None, reason)


# ---------------------------------------------------------------- inputs

class FunctionUrlRequest(BaseModel):
    """The parts of a Lambda Function URL (payload format 2.0) event the webhook reads."""

    model_config = ConfigDict(extra="ignore")

    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    isBase64Encoded: bool = False
    requestContext: dict[str, Any] = Field(default_factory=dict)

    def header(self, name: str) -> str | None:
        # Function URLs lower-case header names already; normalise anyway for other front doors.
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return None

    @property
    def method(self) -> str | None:
        http = self.requestContext.get("http")
        method = http.get("method") if isinstance(http, dict) else None
        return method if isinstance(method, str) else None


class _Release(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int | None = None  # GitHub's release id: a new release with a reused tag is a new run
    tag_name: str = Field(min_length=1, max_length=255)
    html_url: str = Field(min_length=1, max_length=512)
    # Strict: GitHub sends JSON booleans; a 0/"false" here is not a payload GitHub produced.
    draft: StrictBool = False
    prerelease: StrictBool = False
    body: str | None = None
    name: str | None = None
    published_at: str | None = None  # signed (unlike the delivery id): webhook_guards dedupes and ages on it


class _Repository(BaseModel):
    model_config = ConfigDict(extra="ignore")

    full_name: str = Field(min_length=3, max_length=200, pattern=r"^[^/\s]+/[^/\s]+$")


class _Sender(BaseModel):
    model_config = ConfigDict(extra="ignore")

    login: str = ""


class ReleaseEvent(BaseModel):
    """GitHub `release` webhook payload (the fields yoloops uses)."""

    model_config = ConfigDict(extra="ignore")

    action: str
    release: _Release
    repository: _Repository
    sender: _Sender = Field(default_factory=_Sender)


class ReleaseBlock(BaseModel):
    """The optional ```yaml block of a release body."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[A-Za-z0-9][A-Za-z0-9._-]{0,62})?$")
    hyperparameters: TrainingHyperparameters | None = None
    # Base weights of this release's run: "champion", or a .pt under models/pretrained/ (yoloops_core.weights).
    weights: str | None = Field(None, min_length=1, max_length=1024)

    @property
    def dataset_name(self) -> str | None:
        return self.dataset.split("/", 1)[0] if self.dataset else None

    @property
    def dataset_version(self) -> str | None:
        return self.dataset.split("/", 1)[1] if self.dataset and "/" in self.dataset else None


def parse_release_block(body: str | None) -> ReleaseBlock:
    """The first ```yaml block of the release notes, validated; no block -> empty ReleaseBlock."""
    body = body or ""
    opening = _YAML_OPEN.search(body)
    if not opening:
        return ReleaseBlock()
    closing = _FENCE_CLOSE.search(body, opening.end())
    # Markdown renders an unclosed fence to the end of the text; read it the same way.
    text = body[opening.end():closing.start() if closing else len(body)]
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BLOCK_BYTES:
        raise InvalidInput(f"release yaml block is over {MAX_YAML_BLOCK_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"release yaml block is not valid YAML: {exc}".splitlines()[0]) from exc
    if data is None:
        return ReleaseBlock()
    if not isinstance(data, dict):
        raise InvalidInput(f"release yaml block must be a mapping (dataset, hyperparameters), got {type(data).__name__}")
    try:
        return ReleaseBlock.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, "release yaml block")) from exc


# ---------------------------------------------------------------- signature

def signature_for(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def signature_matches(secret: str | bytes, body: bytes, provided: str) -> bool:
    if not usable_secret(secret):  # anyone can sign with an empty key
        return False
    # compare_digest on bytes: a str with non-ASCII characters would raise TypeError.
    expected = signature_for(secret, body).encode()
    return hmac.compare_digest(expected, provided.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------- domain

class DeliveryInProgress(Exception):
    """The same delivery id is being processed right now (concurrent redelivery)."""


@dataclass(frozen=True)
class WebhookDeps:
    """Collaborators of `handle_webhook`; the handler wires real ones, tests pass fakes."""

    secret: Callable[[], str]
    # (request, run id) -> StartResult; duplicates by execution name come back started=False.
    start: Callable[[RunRequest, str], StartResult]
    # (delivery id, action) -> action's result, computed once per delivery id.
    once: Callable[[str, Callable[[], dict[str, Any]]], dict[str, Any]]
    # (dataset name or None, version or None) -> the newest complete version matching, or None.
    find_dataset: Callable[[str | None, str | None], DatasetRef | None]
    notify: Callable[[Notification], Any]
    # run id -> did that run fail because its image never appeared in ECR? (then a re-publish retries)
    image_never_came: Callable[[str], bool] = lambda run_id: False
    allow_prereleases: bool = False
    max_body_bytes: int = 1_000_000
    # Gives the idempotency layer the invocation's remaining time, so the in-progress record of a
    # crashed invocation expires with it instead of blocking redeliveries for days.
    register_context: Callable[[Any], None] = lambda context: None
    # Publications older than this are refused (None: no age check); `now` is injectable for tests.
    max_release_age_hours: float | None = None
    now: Callable[[], Any] | None = None


def _raw_body(request: FunctionUrlRequest, limit: int) -> bytes | WebhookResponse:
    body = request.body or ""
    if request.isBase64Encoded:
        if len(body) > (limit * 4) // 3 + 4:  # refuse before decoding a huge body
            return _reject(413, f"body is over {limit} bytes")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return _reject(400, "body is flagged base64 but is not valid base64")
    else:
        if len(body) > limit:  # a str is never longer in chars than in UTF-8 bytes
            return _reject(413, f"body is over {limit} bytes")
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > limit:
        return _reject(413, f"body is over {limit} bytes")
    return raw


def handle_webhook(event: Any, deps: WebhookDeps) -> WebhookResponse:
    """Answer one GitHub delivery; starts at most one run per release."""
    try:
        request = FunctionUrlRequest.model_validate(event)
    except ValidationError as exc:
        return _reject(400, describe_validation_error(exc, "function URL event"))
    if request.method not in (None, "POST"):
        return _reject(405, f"method {request.method} not allowed; GitHub POSTs")

    raw = _raw_body(request, deps.max_body_bytes)
    if isinstance(raw, WebhookResponse):
        return raw

    provided = request.header(SIGNATURE_HEADER)
    if not provided:
        return _reject(401, "missing X-Hub-Signature-256 header")
    secret = deps.secret()
    if not usable_secret(secret):
        logger.error("GitHub webhook secret is empty: every delivery is refused until it is set")
        return _reject(500, "the webhook secret is empty on the server; set GithubWebhookSecret in Secrets Manager")
    if not signature_matches(secret, raw, provided):
        return _reject(401, "X-Hub-Signature-256 does not match the body")

    event_type = request.header(EVENT_HEADER) or ""
    delivery = request.header(DELIVERY_HEADER) or ""
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return _reject(400, f"body is not valid JSON: {exc}")
    log = {"github_event": event_type, "delivery": delivery}

    if event_type == "ping":
        logger.info("webhook ping", extra=log)
        return WebhookResponse(200, {"ok": True, "event": "ping"})
    if event_type != "release":
        return _ignore(f"event type {event_type or '(none)'!r} starts nothing; only 'release' does")

    try:
        release = ReleaseEvent.model_validate(payload)
    except ValidationError as exc:
        return _reject(422, describe_validation_error(exc, "release payload"))
    rel = release.release
    if release.action != "published":
        return _ignore(f"release action {release.action!r} starts nothing; only 'published' does")
    if rel.draft:
        return _ignore(f"release {rel.tag_name} is a draft; drafts never start a run")
    if rel.prerelease and not deps.allow_prereleases:
        return _ignore(f"release {rel.tag_name} is a prerelease and ALLOW_PRERELEASES is off")
    too_old = release_age_problem(rel.published_at, deps.max_release_age_hours, deps.now() if deps.now else None)
    if too_old:
        logger.warning("stale release refused", extra=log | {"reason": too_old})
        return _reject(422, too_old)

    repo, tag = release.repository.full_name, rel.tag_name
    run_id = run_id_for_release(repo, tag, rel.id)
    log |= {"repo": repo, "tag": tag, "run_id": run_id}
    correlate(logger, run_id)  # the rest of this delivery's log lines name the run
    try:
        request_model = _run_request(release, delivery, deps)
    except InvalidInput as exc:
        reason = f"release {repo}@{tag} starts no run: {exc}"
        logger.warning("release rejected", extra=log | {"reason": str(exc)})
        deps.notify(Notification(event_type=EventType.REJECTED, run_id=run_id, text=reason, reason=str(exc),
                                 links={"release": rel.html_url}))
        return _reject(422, reason)

    def start() -> dict[str, Any]:
        # The execution name dedupes the release; only a run that died waiting for its image is retried,
        # as `<run id>-r<n>` (the same release.id, published again once CI pushed the image).
        for retry in range(1, MAX_RELEASE_RETRIES + 1):
            rid = run_id_for_release(repo, tag, rel.id, retry)
            result = deps.start(request_model, rid)
            if result.started or not deps.image_never_came(rid):
                break
        return {"run_id": result.run_id, "started": result.started, "execution_arn": result.execution_arn}

    try:
        key = release_key(rel.id, release.action, rel.published_at, delivery)
        outcome = deps.once(key, start) if key else start()
    except DeliveryInProgress:
        return _reject(409, f"release {tag} (delivery {delivery}) is already being processed")
    logger.info("release handled", extra=log | outcome)
    if not outcome["started"]:
        return WebhookResponse(200, outcome, f"a run for {repo}@{tag} was already started")
    return WebhookResponse(202, outcome | {"dataset": request_model.dataset.model_dump()})


def _run_request(release: ReleaseEvent, delivery: str, deps: WebhookDeps) -> RunRequest:
    rel = release.release
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", rel.tag_name):
        raise InvalidInput(f"tag {rel.tag_name!r} is not a valid container image tag "
                           "(letters, digits, '_', '.', '-'; at most 128)")
    block = parse_release_block(rel.body)
    name, version = block.dataset_name, block.dataset_version
    dataset = deps.find_dataset(name, version)
    if dataset is None:
        if name:
            raise InvalidInput(f"dataset {block.dataset!r} named in the release has no complete version")
        raise InvalidInput("no complete dataset version exists yet; push one or name it in a ```yaml block")
    hyper = block.hyperparameters.as_strings() if block.hyperparameters else {}
    detail = {"repo": release.repository.full_name, "tag": rel.tag_name, "delivery": delivery,
              "sender": release.sender.login}
    try:
        return RunRequest(dataset=dataset, image_tag=rel.tag_name, hyperparameters=hyper, weights=block.weights,
                          trigger=Trigger(source="github", ref=rel.html_url, detail=detail))
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, "run request")) from exc


# ---------------------------------------------------------------- real collaborators

def delivery_once(table: str, dynamodb: Any, expires_after_seconds: int = 4 * 24 * 3600):
    """(`once(delivery id, action)`, `register_context(context)`) backed by powertools idempotency on the IdempotencyTable.

    GitHub lets deliveries be redelivered for 3 days, hence a 4-day record; the execution name
    (= run id) still guards the same release for 90 days whatever the delivery id.
    """
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb)
    config = IdempotencyConfig(event_key_jmespath="delivery_id", expires_after_seconds=expires_after_seconds,
                               raise_on_no_idempotency_key=True)

    @idempotent_function(data_keyword_argument="delivery", persistence_store=persistence, config=config,
                         key_prefix="github-delivery")
    def _run(delivery: dict[str, str], action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return action()

    def once(delivery_id: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return _run(delivery={"delivery_id": delivery_id}, action=action)
        except IdempotencyAlreadyInProgressError as exc:
            raise DeliveryInProgress(delivery_id) from exc

    return once, config.register_lambda_context


@cache
def default_deps() -> WebhookDeps:
    """Real collaborators from settings (the handler's wiring), built once per cold start."""
    from yoloops_core import aws
    from yoloops_core.config import ConfigError, get_settings
    from yoloops_core.notifications import publish
    from yoloops_core.runs import start_run
    from yoloops_core.s3_trigger import latest_complete_version
    from yoloops_core.store import RunStore

    settings = get_settings()
    missing = [n for n in ("github_webhook_secret_arn", "state_machine_arn", "idempotency_table")
               if not getattr(settings, n)]
    if missing:
        raise ConfigError(f"github webhook needs {', '.join(m.upper() for m in missing)}")
    once, register_context = delivery_once(settings.idempotency_table, aws.client("dynamodb"))
    return WebhookDeps(
        secret=lambda: aws.secret(settings.github_webhook_secret_arn),
        start=lambda req, run_id: start_run(req, run_id, settings.state_machine_arn, aws.client("stepfunctions")),
        once=once,
        register_context=register_context,
        find_dataset=lambda name, version: latest_complete_version(
            settings.runs_table, ddb=aws.client("dynamodb"), name=name, version=version),
        notify=lambda n: publish(n, settings.notifications_topic_arn, aws.client("sns")),
        image_never_came=lambda run_id: _image_never_came(RunStore(settings.runs_table, aws.client("dynamodb")), run_id),
        allow_prereleases=settings.allow_prereleases,
        max_body_bytes=settings.max_webhook_body_bytes,
        max_release_age_hours=settings.max_release_age_hours,
    )


def _image_never_came(store: Any, run_id: str) -> bool:
    record = store.get_run(run_id) or {}
    return record.get("status") == "FAILED" and str(record.get("failure_reason") or "").startswith("ImageNotFound")
