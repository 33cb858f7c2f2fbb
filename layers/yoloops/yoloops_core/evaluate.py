"""Evaluate a finished training job against the dataset's champion."""

from __future__ import annotations

import json
import tarfile
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, Field

from yoloops_core import budget
from yoloops_core.config import ConfigError, Settings
from yoloops_core.models import AttemptState, RunContext, RunStatus

logger = Logger(child=True)

# Metrics where smaller is better cannot be a promotion metric: the champion's conditional write
# (`metric_value < :new`) assumes larger is better.
LOWER_IS_BETTER = frozenset({"box_loss"})


class MetricsMissing(RuntimeError):
    """The job finished but neither FinalMetricDataList nor metrics.json has the promotion metric."""


class TrainingResult(BaseModel):
    job_name: str
    status: str | None = None
    # The state carries only name and status (a DescribeTrainingJob output can be large, and the state
    # has a 256 KiB limit); Evaluate describes the job itself when the description is not given.
    description: dict[str, Any] = Field(default_factory=dict)


class EvaluateEvent(BaseModel):
    run: RunContext
    attempt: AttemptState
    training: TrainingResult


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def final_metrics(description: dict[str, Any]) -> dict[str, float]:
    """FinalMetricDataList -> {name: value} (SageMaker keeps the last value each regex matched)."""
    out: dict[str, float] = {}
    for row in description.get("FinalMetricDataList") or []:
        if isinstance(row, dict) and isinstance(row.get("MetricName"), str):
            try:
                out[row["MetricName"]] = float(row["Value"])
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_metrics_json(s3: Any, model_artifacts: str) -> dict[str, float]:
    """Numeric top-level entries of metrics.json inside model.tar.gz, read as a stream from S3."""
    bucket, key = split_s3_uri(model_artifacts)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with tarfile.open(fileobj=body, mode="r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.lstrip("./") == "metrics.json":
                data = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                if not isinstance(data, dict):
                    break
                nested = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
                return {**_numeric(nested), **_numeric(data)}
    return {}


def is_better(challenger: float, champion: float | None, min_improvement: float,
              min_first_metric: float = 0.0) -> bool:
    """The first model must reach min_first_metric; later ones must beat the champion by min_improvement.

    Written as the champion's conditional write evaluates it (champion < new and champion <= new - min),
    so the decision here and the write in DynamoDB never disagree on a boundary.
    """
    if champion is None:
        return challenger >= min_first_metric
    return champion < challenger and champion <= challenger - min_improvement


def verdict(metric: str, value: float, champion: float | None, settings: Settings,
            champion_has_metric: bool = True) -> tuple[bool, str | None, str | None]:
    """(better, reason when not better, warning). A model at exactly 0 is never promoted silently."""
    useless = f"{metric} is exactly 0: this model detects nothing and is useless" if value == 0 else None
    if not champion_has_metric:
        return False, f"the champion has no {metric} to compare with; promote by hand if wanted", useless
    better = is_better(value, champion, settings.min_improvement, settings.min_first_metric)
    if better:
        warning = None
        if useless:
            warning = f"{useless}; it became champion only because MinFirstMetric is {settings.min_first_metric:g}"
        return True, None, warning
    if useless:
        return False, useless, useless
    if champion is None:
        return False, (f"first model of the dataset: {metric} {value:.4f} is below MinFirstMetric "
                       f"{settings.min_first_metric:g}"), None
    if value > champion:
        return False, (f"{metric} {value:.4f} beats the champion's {champion:.4f} by {value - champion:+.4f}, "
                       f"less than MinImprovement {settings.min_improvement:g}"), None
    return False, f"{metric} {value:.4f} is not better than the champion's {champion:.4f}", None


def _champion_value(champion: dict[str, Any] | None, metric: str) -> tuple[float | None, bool]:
    """(the champion's value on `metric`, whether it has one). A champion promoted under another
    PromotionMetric is compared on its recorded metrics, as the conditional write does."""
    if not champion:
        return None, True
    if champion.get("metric") in (None, metric) and isinstance(champion.get("metric_value"), (int, float)):
        return float(champion["metric_value"]), True
    value = _numeric(champion.get("metrics") or {}).get(metric)
    return value, value is not None


def register_model(registry: Any, run: RunContext, *, job_name: str, artifacts: str | None, metric: str,
                   metrics: dict[str, float], better: bool, reason: str | None,
                   existing_arn: str | None) -> tuple[str | None, str | None]:
    """Register the evaluated model (Rejected, or Pending until Promote decides); (arn, error).

    A registry failure does not lose the run's result: the error goes into the result and the
    notification, and Promote / the watchdog's repair sync the approval later."""
    from yoloops_core.registry import PENDING, REJECTED

    if registry is None or not artifacts:
        return existing_arn, None
    props = {"job_name": job_name, "dataset_version": run.dataset.version, "promotion_metric": metric,
             "base_weights": run.base_weights or "scratch", **metrics}
    try:
        arn = registry.register(dataset=run.dataset.name, run_id=run.run_id, model_data_url=artifacts,
                                image_uri=run.image_uri, status=PENDING if better else REJECTED,
                                properties=props, description="" if better else (reason or "not better")[:1024],
                                existing_arn=existing_arn)
        return arn, None
    except Exception as exc:  # reported, never dropped: see the docstring
        logger.exception("model registry: registration failed", extra={"run_id": run.run_id})
        return existing_arn, f"model registry: {type(exc).__name__}: {exc}"[:500]


def evaluate(event: EvaluateEvent, *, settings: Settings, store: Any, s3: Any, registry: Any = None,
             sagemaker: Any = None, now: datetime | None = None) -> dict[str, Any]:
    run, desc = event.run, event.training.description
    if not desc and sagemaker is not None:
        desc = sagemaker.describe_training_job(TrainingJobName=event.training.job_name)
    metric = settings.promotion_metric
    if metric in LOWER_IS_BETTER:
        raise ConfigError(f"PROMOTION_METRIC {metric!r} is lower-is-better; use mAP50-95, mAP50, precision or recall")
    artifacts = (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    metrics = final_metrics(desc)
    source = "FinalMetricDataList"
    if metric not in metrics:
        if not artifacts:
            raise MetricsMissing(f"job {event.training.job_name} reported no {metric!r} and has no model artifact")
        from_file = read_metrics_json(s3, artifacts)
        metrics = {**metrics, **from_file}
        source = "metrics.json"
        if metric not in metrics:
            raise MetricsMissing(f"job {event.training.job_name}: {metric!r} is neither in FinalMetricDataList "
                                 f"nor in metrics.json of {artifacts}")
    champion = store.get_champion(run.dataset.name)
    champion_value, comparable = _champion_value(champion, metric)
    champion_metrics = _numeric((champion or {}).get("metrics") or {})
    value = metrics[metric]
    better, reason, warning = verdict(metric, value, champion_value, settings, comparable)
    delta = None if champion_value is None else value - champion_value
    deltas = {k: metrics[k] - champion_metrics[k] for k in metrics if k in champion_metrics}
    store.record_attempt_billing(run.run_id, event.attempt.number, budget.billable_seconds(desc),
                                 training_seconds=budget.training_seconds(desc))
    record = store.get_run(run.run_id) or {}
    package_arn, registry_error = register_model(
        registry, run, job_name=event.training.job_name, artifacts=artifacts, metric=metric, metrics=metrics,
        better=better, reason=reason, existing_arn=record.get("model_package_arn"))
    store.update_run(
        run.run_id, now=now, status=RunStatus.EVALUATING, metrics=metrics, champion_metrics=champion_metrics,
        delta=delta, model_package_arn=package_arn, note=f"{metric}={value:.4f} vs champion "
        f"{'none' if champion_value is None else f'{champion_value:.4f}'}: {'better' if better else 'not better'}"
        + (f" ({reason})" if reason else "") + (f"; {registry_error}" if registry_error else ""),
    )
    logger.info("evaluated", extra={"run_id": run.run_id, "metric": metric, "value": value,
                                    "champion": champion_value, "better": better, "source": source})
    result = {
        "better": better, "run_id": run.run_id, "dataset": run.dataset.name, "job_name": event.training.job_name,
        "metric": metric, "challenger": value, "champion": champion_value, "delta": delta, "deltas": deltas,
        "min_improvement": settings.min_improvement, "min_first_metric": settings.min_first_metric,
        "metrics": metrics, "metrics_source": source,
        "champion_metrics": champion_metrics, "champion_run_id": (champion or {}).get("run_id"),
        "model_artifacts": artifacts, "model_package_arn": package_arn,
    }
    for key, text in (("reason", reason), ("warning", warning), ("registry_error", registry_error)):
        if text:
            result[key] = text
    return result
