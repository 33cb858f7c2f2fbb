"""Typed configuration, read once per cold start from the environment the template sets."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

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
    github_webhook_secret_arn: str | None = None
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

    # Promotion.
    promotion_metric: str = "mAP50-95"
    min_improvement: float = Field(0.0, ge=0.0)

    # Budget gate.
    monthly_budget_usd: float = Field(100.0, ge=0.0)
    hourly_price_override_usd: float | None = Field(None, ge=0.0)

    # GitHub release trigger.
    allow_prereleases: bool = False
    image_poll_seconds: int = Field(30, ge=0)
    image_max_polls: int = Field(20, ge=1)
    max_webhook_body_bytes: int = Field(1_000_000, ge=1024)

    # Links in notifications.
    console_region: str = "us-east-1"

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
    def effective_max_wait_seconds(self) -> int:
        return self.max_wait_seconds or 2 * self.max_runtime_seconds


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cold start). Tests call `get_settings.cache_clear()`."""
    return Settings.from_env()
