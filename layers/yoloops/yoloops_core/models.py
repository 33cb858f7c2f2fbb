"""Typed contracts shared by triggers, workflow steps, the CLI and the local stack."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer

# MAX_RUN_ID_LENGTH: job name "<run id>-<stack code>-a<n>" fits SageMaker's 63 chars (re-exported for steps.py).
from yoloops_core.run_ids import MAX_RUN_ID_LENGTH, dataset_run_id, release_run_id  # noqa: F401
from yoloops_core.snapshot import Snapshot

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
DATASETS_PREFIX = "datasets/"


class InvalidInput(ValueError):
    """An event or request that cannot be processed; the message names the offending field."""


def describe_validation_error(exc: ValidationError, what: str) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return f"invalid {what}: " + "; ".join(parts)


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: Any, what: str) -> M:
    """Validate `data` into `model`, raising InvalidInput with a message naming the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, what)) from exc


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- run ids

def run_id_for_dataset(dataset: DatasetRef, content_hash: str) -> str:
    """Injective in (name, version, format, location) plus the content hash (yoloops_core.run_ids)."""
    version = None if dataset.content_named else dataset.version
    return dataset_run_id(dataset.name, version, dataset.format, dataset.key, content_hash)


def run_id_for_release(repository: str, tag: str, release_id: int | str | None = None, retry: int = 1) -> str:
    return release_run_id(repository, tag, release_id, retry)


def job_name(run_id: str, attempt: int, stack_code: str = "") -> str:
    """`<run id>-<stack code>-a<attempt>` (Settings.stack_code; no code: `<run id>-a<attempt>`)."""
    return f"{run_id}-{stack_code}-a{attempt}" if stack_code else f"{run_id}-a{attempt}"


def run_id_from_job_name(name: str, stack_code: str = "") -> tuple[str, int] | None:
    """(run id, attempt) of one of this stack's jobs; None for any other job (another stack's, Studio's).

    With a stack code, only names that carry it are ours: the check needs no call, so a sweep never asks
    SageMaker about a job its role may not touch."""
    code = f"-{re.escape(stack_code)}" if stack_code else ""
    m = re.fullmatch(rf"(.+){code}-a(\d{{1,2}})", name)
    return (m.group(1), int(m.group(2))) if m else None


# ---------------------------------------------------------------- execution input

class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)
    # "dir": s3://<bucket>/datasets/<name>/<version>/ ; "zip": s3://<bucket>/datasets/<name>/<version>.zip
    format: Literal["dir", "zip"] = "dir"
    # An upload with no version segment (datasets/<name>/..., datasets/<name>.zip): where it really is;
    # its version is then a short content hash (yoloops_core.uploads).
    location: str | None = Field(None, pattern=r"^datasets/[^\x00]{1,1000}$")

    @model_serializer(mode="wrap")
    def _drop_unset_location(self, handler: Any) -> Any:
        data = handler(self)  # a versioned dataset keeps its old shape: {name, version, format}
        if isinstance(data, dict) and data.get("location") is None:
            data.pop("location", None)
        return data

    @property
    def content_named(self) -> bool:
        return self.location is not None

    @property
    def key(self) -> str:
        if self.location is not None:
            return self.location
        base = f"{DATASETS_PREFIX}{self.name}/{self.version}"
        return base + ".zip" if self.format == "zip" else base + "/"


class Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # retrain/retry (yoloops_core.rerun): ref is the run started again, and the run id says so (-t<n>/-y<n>).
    source: Literal["s3", "github", "cli", "manual", "retrain", "retry"]
    ref: str = Field(min_length=1, max_length=512)  # object key, release URL, user...
    detail: dict[str, Any] = Field(default_factory=dict)


class RunRequest(BaseModel):
    """What starts a run: the Step Functions execution input. Execution name = run id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: DatasetRef
    trigger: Trigger
    image_tag: str | None = Field(None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    # Base weights for this run ("champion", a .pt name/key under models/pretrained/); overrides the
    # manifest's and the stack's BaseWeights (yoloops_core.weights).
    weights: str | None = Field(None, max_length=1024)
    # Per-run hyperparameters as a release's yaml block gives them (JSON scalars): checked at ValidateDataset
    # against the same allow-list (yoloops_core.hyperparameters), applied over `hyperparameters`.
    overrides: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # This run's SageMaker instance type instead of the stack's InstanceType (priced and planned by CheckBudget).
    instance_type: str | None = Field(None, pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")

    @field_validator("hyperparameters")
    @classmethod
    def _keys_are_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key):
                raise ValueError(f"hyperparameter name {key!r} is not an identifier")
        return value


class RunStatus(StrEnum):
    STARTED = "STARTED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # RequireApproval: waiting for a person (no job, no GPU held)
    NOT_APPROVED = "NOT_APPROVED"  # rejected, or the approval timed out before training
    REJECTED = "REJECTED"
    BUDGET_BLOCKED = "BUDGET_BLOCKED"
    TRAINING = "TRAINING"
    EVALUATING = "EVALUATING"
    PROMOTED = "PROMOTED"
    KEPT = "KEPT"
    FAILED = "FAILED"

    @property
    def in_flight(self) -> bool:
        return self in (RunStatus.STARTED, RunStatus.AWAITING_APPROVAL, RunStatus.TRAINING, RunStatus.EVALUATING)

    @property
    def finished(self) -> bool:
        return not self.in_flight


class EventType(StrEnum):
    STARTED = "run.started"
    REJECTED = "dataset.rejected"
    UNCHANGED = "dataset.unchanged"  # an upload with the same content as an earlier run: nothing started
    BUDGET_BLOCKED = "budget.blocked"
    FAILED = "training.failed"
    INTERRUPTED = "training.interrupted"
    RETRY = "training.retry"
    PROMOTED = "model.promoted"
    KEPT = "champion.kept"
    MANUAL_PROMOTE = "champion.manual_promote"
    ROLLBACK = "champion.rollback"
    APPROVAL_REQUESTED = "approval.requested"  # Slack renders Approve / Reject buttons
    APPROVED = "approval.approved"
    NOT_APPROVED = "run.not_approved"  # the train approval was rejected or timed out: the run ended
    LEADERBOARD = "sweep.leaderboard"  # a sweep's training jobs ranked, in its thread


class ChampionRef(BaseModel):
    """The dataset's champion when the run started: the model the job scores beside the challenger on the
    same images, and the one Promote's conditional write requires to still be champion."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    model_key: str | None = None  # models/<dataset>/versions/<run id>/best.pt; None when it is missing
    metric: str | None = None
    metric_value: float | None = None  # as recorded when it was promoted (on its own val split)
    missing_reason: str | None = None  # why its weights cannot be scored (the verdict then says so)


class RunContext(BaseModel):
    """`$.run` in the state machine: the validated request plus what the first step resolved."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    execution_arn: str | None = None
    dataset: DatasetRef
    trigger: Trigger
    image_tag: str | None = None
    image_uri: str  # resolved training image (release runs: <ECR repo>:<tag>)
    needs_image_check: bool = False
    image_poll_seconds: int = Field(30, ge=1)
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    base_weights: str | None = None  # S3 key of the .pt the run starts from; None = the model YAML
    instance_type: str | None = None  # the request's; None = the stack's InstanceType
    # RequireApproval when the run started (yoloops_core.approval): wait for a person before Train / Promote.
    approve_train: bool = False
    approve_promote: bool = False
    approval_timeout_seconds: int = Field(86400, ge=1)
    champion: ChampionRef | None = None  # None: the dataset had no champion when the run started
    # The validated objects, written by ValidateDataset: the run trains exactly these (yoloops_core.snapshot).
    snapshot: Snapshot | None = None
    started_at: str  # ISO-8601 UTC


class AttemptState(BaseModel):
    """`$.gate.attempt`: which SageMaker job this attempt is, and whether to try again."""

    number: int = Field(ge=1)
    job_name: str
    retry: bool = False
    reason: str | None = None
    backoff_seconds: int = Field(0, ge=0)  # the Wait before this attempt's job (capacity comes back later)
