"""The hyperparameters a team may set per run: a release's ```yaml block, `yoloops train --set`, a retry's
overrides. One allow-list, so every way in refuses the same keys and values with the same words."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from yoloops_core.models import InvalidInput


class TrainingHyperparameters(BaseModel):
    """Overrides accepted in a release's yaml block; the container re-validates them (strings there)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    epochs: int | None = Field(None, ge=1, le=10_000)
    imgsz: int | None = Field(None, ge=32, le=4096)
    batch: int | None = Field(None, ge=-1, le=4096)
    patience: int | None = Field(None, ge=0, le=10_000)
    lr0: float | None = Field(None, gt=0, le=1)
    lrf: float | None = Field(None, gt=0, le=1)
    momentum: float | None = Field(None, ge=0, le=1)
    weight_decay: float | None = Field(None, ge=0, le=1)
    warmup_epochs: float | None = Field(None, ge=0, le=100)
    optimizer: Literal["auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp"] | None = None
    seed: int | None = Field(None, ge=0)
    close_mosaic: int | None = Field(None, ge=0)
    mosaic: float | None = Field(None, ge=0, le=1)
    fliplr: float | None = Field(None, ge=0, le=1)
    cos_lr: bool | None = None

    @field_validator("lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "mosaic", "fliplr",
                     mode="before")
    @classmethod
    def _ints_are_floats(cls, value: Any) -> Any:
        # YAML reads `lr0: 1` as an int; strict mode would refuse it for a float field.
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def as_strings(self) -> dict[str, str]:
        """SageMaker hyperparameters are strings."""
        out = {}
        for key, value in self.model_dump(exclude_none=True).items():
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


def check_overrides(values: dict[str, Any], what: str = "overrides") -> dict[str, str]:
    """Validate overrides (JSON/YAML scalars) against the allow-list; the SageMaker strings, or InvalidInput
    naming each bad key, its value and why."""
    if not isinstance(values, dict):
        raise InvalidInput(f"{what} must be a mapping of hyperparameter names to values")
    try:
        return TrainingHyperparameters.model_validate(values).as_strings()
    except ValidationError as exc:
        allowed = ", ".join(TrainingHyperparameters.model_fields)
        parts = []
        for err in exc.errors()[:5]:
            key = ".".join(str(p) for p in err["loc"]) or "(root)"
            if err["type"] == "extra_forbidden":
                parts.append(f"{key} is not a hyperparameter that can be set (allowed: {allowed})")
            else:
                parts.append(f"{key}={values.get(key)!r}: {err['msg']}")
        raise InvalidInput(f"invalid {what}: " + "; ".join(parts)) from exc


def scalar(raw: str) -> str | int | float | bool:
    """A `--set` value as the scalar a YAML block would give (and `1e-3` a float, which YAML 1.1 reads as
    a string): true/false, an int, a float, else the text."""
    text = raw.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return raw


def parse_assignments(items: list[str]) -> dict[str, str | int | float | bool]:
    """`--set k=v` options -> {k: v}: `epochs=150` is 150, `lr0=1e-3` 0.001, `cos_lr=true` True,
    `optimizer=AdamW` "AdamW"."""
    out: dict[str, str | int | float | bool] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--set {item!r} is not KEY=VALUE")
        out[key.strip()] = scalar(raw)
    return out
