"""Evaluate a finished training job against the dataset's champion."""

from __future__ import annotations

import json
import tarfile
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel

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
    description: dict[str, Any]


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


def is_better(challenger: float, champion: float | None, min_improvement: float) -> bool:
    """The first model of a dataset is better; later ones must beat the champion by min_improvement."""
    if champion is None:
        return True
    delta = challenger - champion
    return delta > 0 and delta >= min_improvement


def evaluate(event: EvaluateEvent, *, settings: Settings, store: Any, s3: Any,
             now: datetime | None = None) -> dict[str, Any]:
    run, desc = event.run, event.training.description
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
    champion_value = float(champion["metric_value"]) if champion and champion.get("metric_value") is not None \
        else None
    champion_metrics = _numeric((champion or {}).get("metrics") or {})
    value = metrics[metric]
    better = is_better(value, champion_value, settings.min_improvement)
    delta = None if champion_value is None else value - champion_value
    deltas = {k: metrics[k] - champion_metrics[k] for k in metrics if k in champion_metrics}
    store.record_attempt_billing(run.run_id, event.attempt.number, budget.billable_seconds(desc))
    store.update_run(
        run.run_id, now=now, status=RunStatus.EVALUATING, metrics=metrics, champion_metrics=champion_metrics,
        delta=delta, note=f"{metric}={value:.4f} vs champion "
        f"{'none' if champion_value is None else f'{champion_value:.4f}'}: {'better' if better else 'not better'}",
    )
    logger.info("evaluated", extra={"run_id": run.run_id, "metric": metric, "value": value,
                                    "champion": champion_value, "better": better, "source": source})
    return {
        "better": better, "run_id": run.run_id, "dataset": run.dataset.name, "job_name": event.training.job_name,
        "metric": metric, "challenger": value, "champion": champion_value, "delta": delta, "deltas": deltas,
        "min_improvement": settings.min_improvement, "metrics": metrics, "metrics_source": source,
        "champion_metrics": champion_metrics, "champion_run_id": (champion or {}).get("run_id"),
        "model_artifacts": artifacts,
    }
