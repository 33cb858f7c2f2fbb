"""Typed configuration, read once per cold start from the environment the template sets."""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(RuntimeError):
    """The function's environment is missing or has an ill-typed setting."""


class Settings(BaseModel):
    """Every setting a yoloops function may read. Names map 1:1 to upper-case env vars."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    artifacts_bucket: str
    runs_table: str
    notifications_topic_arn: str
    idempotency_table: str | None = None
    state_machine_arn: str | None = None
    slack_webhook_secret_arn: str | None = None
    # Slack Web API (threads): used when the bot-token secret holds a bot token and a channel is set;
    # otherwise the incoming webhook. The API base URL is overridable so the local stack can receive.
    slack_bot_token_secret_arn: str | None = None
    slack_channel: str = ""
    slack_api_url: str = "https://slack.com/api/"
    github_webhook_secret_arn: str | None = None
    # A GitHub token: release runs write their results back to the release (yoloops_core.release_writeback)
    # once the secret holds one. The API base URL is overridable so the local stack can fake GitHub.
    github_token_secret_arn: str | None = None
    github_api_url: str = "https://api.github.com"
    # The role training jobs run as (sweeps put it in the tuning job's training job definition).
    sagemaker_role_arn: str | None = None
    # Slack app signing secret: the Approve / Reject buttons' requests are verified with it.
    slack_signing_secret_arn: str | None = None
    wandb_secret_arn: str | None = None

    # Training plan (template parameters).
    training_image_uri: str = ""
    ecr_repository: str = ""
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = Field(1, ge=1)
    use_spot: bool = True
    max_runtime_seconds: int = Field(3600, ge=60)
    max_wait_seconds: int | None = None  # default: 2 x max runtime (must exceed it for spot)
    max_attempts: int = Field(3, ge=1, le=10)
    retry_backoff_seconds: int = Field(60, ge=0)  # first wait after a capacity/internal error; doubles
    volume_size_gb: int = Field(50, ge=1)
    default_model: str = "yolo11n.yaml"
    default_epochs: int = Field(50, ge=1)
    # Stack-wide hyperparameter defaults (template parameter DefaultHyperparameters, a JSON object), e.g. tiny
    # CPU settings for the local stack; a run's own hyperparameters override them.
    default_hyperparameters: dict[str, str] = Field(default_factory=dict)

    # Datasets without a validation split: this share of the images (by file-name hash) becomes val.
    val_fraction: float = Field(0.15, ge=0.0, le=0.9)

    # Promotion.
    promotion_metric: str = "mAP50-95"
    min_improvement: float = Field(0.0, ge=0.0)
    # The first model of a dataset becomes champion only if its PromotionMetric reaches this floor.
    min_first_metric: float = Field(0.0, ge=0.0)
    # Paired verdict (yoloops_core.verdict): both models scored in the same job on the same images.
    max_test_regression: float = Field(0.02, ge=0.0, le=1.0)
    max_class_drop: float = Field(0.1, ge=0.0, le=1.0)
    min_class_instances: int = Field(20, ge=1)
    # SageMaker Model Registry: one ModelPackage per evaluated model in group "<prefix>--<dataset>".
    model_registry: bool = True
    model_package_group_prefix: str = "yoloops"

    # Stacks sharing an account (models.job_name): the yoloops:stack tag value (the stack name) and the
    # stack code in every job name (8 hex characters of the stack id), so two stacks never share a job name
    # and each one's watchdog and reconcile touch only its own jobs. Empty (tests): job names carry no code.
    stack_name: str = ""
    stack_code: str = Field("", pattern=r"^[a-z0-9]{0,8}$")

    # Base weights of every run ("", "champion", or a .pt under models/pretrained/; see yoloops_core.weights).
    base_weights: str = ""

    # Budget gate.
    monthly_budget_usd: float = Field(100.0, ge=0.0)
    hourly_price_override_usd: float | None = None  # > 0 (validated below: a price of 0 would disable the gate)
    # An attempt that cannot afford MaxRuntime runs clamped if the rest buys at least this much.
    min_runtime_seconds: int = Field(900, ge=60)
    # When set, spend is the larger of the ledger's and this AWS Budget's actual spend.
    budget_name: str | None = None
    # The stack's own AWS Budget: the scheduled check compares its actual spend with the ledger's.
    ledger_check_budget_name: str | None = None
    # Spot-related failed attempts of one run (no capacity, MaxWaitTimeExceeded) before going on-demand.
    spot_failures_before_on_demand: int = Field(2, ge=1)
    # Watchdog: a run in flight longer than this is stuck (default: every attempt's max wait + image wait).
    stuck_after_seconds: int | None = Field(None, ge=60)

    # Approval gate (yoloops_core.approval): none | train | promote | both; how long a run waits for a person.
    require_approval: Literal["none", "train", "promote", "both"] = "none"
    approval_timeout_hours: float = Field(24.0, gt=0, le=8760)

    # GitHub release trigger.
    allow_prereleases: bool = False
    image_poll_seconds: int = Field(30, ge=1)
    image_max_polls: int = Field(20, ge=1)
    max_webhook_body_bytes: int = Field(1_000_000, ge=1024)
    # A release published longer ago than this is refused (a captured signed delivery replayed later).
    max_release_age_hours: float = Field(24.0, gt=0)

    # Upload sessions (S3 events -> SQS -> the S3 trigger): quiet seconds that close an upload with no
    # completion marker; the queue the trigger sends its delayed "check" messages to.
    upload_quiet_seconds: int = Field(120, ge=1, le=900)
    uploads_queue_url: str | None = None

    # Links in notifications.
    console_region: str = "us-east-1"
    # The stack's region (Lambda sets AWS_REGION): prices are looked up for it.
    aws_region: str | None = None

    @field_validator("default_hyperparameters", mode="before")
    @classmethod
    def _json_object_of_strings(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValueError(f"not a JSON object: {exc}") from exc
        if isinstance(value, dict):  # SageMaker hyperparameters are strings
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        return value

    @field_validator("hourly_price_override_usd")
    @classmethod
    def _positive_price(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:  # also NaN
            raise ValueError(f"{value} refused: an hourly price of 0 (or less) would make every run free and turn "
                             "the budget gate off; leave HourlyPriceOverrideUsd empty to use the AWS Price List API "
                             "price, or set the instance's on-demand hourly price")
        return value

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {
            name: env[name.upper()]
            for name in cls.model_fields
            if env.get(name.upper()) not in (None, "")
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid yoloops configuration: {problems}") from exc

    @property
    def region(self) -> str:
        return self.aws_region or self.console_region

    @property
    def effective_max_wait_seconds(self) -> int:
        return self.max_wait_seconds or 2 * self.max_runtime_seconds

    @property
    def approval_stages(self) -> set[str]:
        """RequireApproval -> the stages a person approves (yoloops_core.approval)."""
        return {"none": set(), "train": {"train"}, "promote": {"promote"},
                "both": {"train", "promote"}}[self.require_approval]

    @property
    def approval_timeout_seconds(self) -> int:
        """ApprovalTimeoutHours as Step Functions' TimeoutSeconds (a positive integer)."""
        return max(1, math.ceil(self.approval_timeout_hours * 3600))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cold start). Tests call `get_settings.cache_clear()`."""
    return Settings.from_env()
