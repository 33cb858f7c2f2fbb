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
from yoloops_core.models import AttemptState, ChampionRef, RunContext, RunStatus
from yoloops_core.pairing import data_diff, read_data_index
from yoloops_core.verdict import Verdict, decide
from yoloops_core.verdict_report import compact_verdict, registry_properties, write_verdict

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


def read_metrics_document(s3: Any, model_artifacts: str) -> dict[str, Any]:
    """metrics.json inside model.tar.gz, read as a stream from S3 ({} when it has none)."""
    bucket, key = split_s3_uri(model_artifacts)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with tarfile.open(fileobj=body, mode="r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.lstrip("./") == "metrics.json":
                data = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                return data if isinstance(data, dict) else {}
    return {}


def flat_metrics(doc: dict[str, Any]) -> dict[str, float]:
    """Numeric top-level entries of metrics.json (older jobs nested them under `metrics`)."""
    nested = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}
    return {**_numeric(nested), **_numeric(doc)}


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
                   existing_arn: str | None, verdict: Verdict | None = None) -> tuple[str | None, str | None]:
    """Register the evaluated model (Rejected, or Pending until Promote decides); (arn, error).

    A registry failure does not lose the run's result: the error goes into the result and the
    notification, and Promote / the watchdog's repair sync the approval later."""
    from yoloops_core.registry import PENDING, REJECTED

    if registry is None or not artifacts:
        return existing_arn, None
    props = {"job_name": job_name, "dataset_version": run.dataset.version, "promotion_metric": metric,
             "base_weights": run.base_weights or "scratch",
             # before the metrics: the registry keeps 50 properties, and the verdict's table must be there
             **(registry_properties(verdict) if verdict is not None else {}), **metrics}
    try:
        arn = registry.register(dataset=run.dataset.name, run_id=run.run_id, model_data_url=artifacts,
                                image_uri=run.image_uri, status=PENDING if better else REJECTED,
                                properties=props, description="" if better else (reason or "not better")[:1024],
                                existing_arn=existing_arn)
        return arn, None
    except Exception as exc:  # reported, never dropped: see the docstring
        logger.exception("model registry: registration failed", extra={"run_id": run.run_id})
        return existing_arn, f"model registry: {type(exc).__name__}: {exc}"[:500]


def _recorded_value(ref: ChampionRef | None, record: dict[str, Any] | None, metric: str) -> float | None:
    """The champion's own number on `metric`, as recorded when it was promoted (its own val split)."""
    if ref is None:
        return None
    if ref.metric in (None, metric) and ref.metric_value is not None:
        return ref.metric_value
    if record and record.get("run_id") == ref.run_id:
        return _champion_value(record, metric)[0]
    return None


def _useless_warning(v: Verdict, value: float, settings: Settings) -> str | None:
    if value != 0:
        return None
    useless = f"{v.metric} is exactly 0: this model detects nothing and is useless"
    if v.better:
        return f"{useless}; it became champion only because MinFirstMetric is {settings.min_first_metric:g}"
    v.reason = useless if v.basis == "first" else v.reason
    return useless


def _job_metrics(event: EvaluateEvent, desc: dict[str, Any], s3: Any, metric: str) -> tuple[dict[str, float],
                                                                                              dict[str, Any], str]:
    """(flat metrics, the whole metrics.json, where the promotion metric came from). metrics.json is read
    when the final metric lines lack the metric, and whenever there is a champion (its paired scores)."""
    artifacts = (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    final = final_metrics(desc)
    wanted = metric not in final or event.run.champion is not None
    doc = read_metrics_document(s3, artifacts) if artifacts and wanted else {}
    metrics = {**flat_metrics(doc), **final}
    if metric not in metrics:
        where = f"metrics.json of {artifacts}" if artifacts else "a model artifact (the job has none)"
        raise MetricsMissing(f"job {event.training.job_name}: {metric!r} is neither in FinalMetricDataList nor in "
                             f"{where}")
    return metrics, doc, "FinalMetricDataList" if metric in final else "metrics.json"


def evaluate(event: EvaluateEvent, *, settings: Settings, store: Any, s3: Any, registry: Any = None,
             sagemaker: Any = None, now: datetime | None = None) -> dict[str, Any]:
    run, desc = event.run, event.training.description
    if not desc and sagemaker is not None:
        desc = sagemaker.describe_training_job(TrainingJobName=event.training.job_name)
    metric = settings.promotion_metric
    if metric in LOWER_IS_BETTER:
        raise ConfigError(f"PROMOTION_METRIC {metric!r} is lower-is-better; use mAP50-95, mAP50, precision or recall")
    artifacts = (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    # The job's cost is recorded before anything here can fail (a missing metric must not make it free).
    store.record_attempt_billing(run.run_id, event.attempt.number, budget.billable_seconds(desc),
                                 training_seconds=budget.training_seconds(desc))
    metrics, doc, source = _job_metrics(event, desc, s3, metric)
    value = metrics[metric]
    record = store.get_champion(run.dataset.name)
    v = decide({**doc, metric: value}, metric=metric, ref=run.champion, settings=settings,
               recorded_value=_recorded_value(run.champion, record, metric))
    warning = _useless_warning(v, value, settings)
    bucket = settings.artifacts_bucket
    diff = data_diff(read_data_index(s3, bucket, run.run_id),
                     read_data_index(s3, bucket, run.champion.run_id) if run.champion else None) \
        if run.champion else {"available": False, "reason": "first model of the dataset"}
    if diff.get("val_in_champion_train"):
        v.notes.append(f"{diff['val_in_champion_train']} val images were in the champion's training data: they "
                       "inflate the champion's score")
    report = {**v.to_dict(), "data_diff": diff, "run_id": run.run_id, "dataset": run.dataset.name,
              "dataset_version": run.dataset.version, "job_name": event.training.job_name,
              "min_improvement": settings.min_improvement, "max_test_regression": settings.max_test_regression,
              "max_class_drop": settings.max_class_drop, "min_class_instances": settings.min_class_instances}
    if artifacts:
        write_verdict(s3, bucket, run, report)
    package_arn, registry_error = register_model(
        registry, run, job_name=event.training.job_name, artifacts=artifacts, metric=metric, metrics=metrics,
        better=v.better, reason=v.reason, existing_arn=(store.get_run(run.run_id) or {}).get("model_package_arn"),
        verdict=v)
    champion_metrics = _numeric((record or {}).get("metrics") or {}) if v.basis != "paired" else {}
    store.update_run(
        run.run_id, now=now, status=RunStatus.EVALUATING, metrics=metrics, champion_metrics=champion_metrics,
        delta=v.delta, model_package_arn=package_arn, verdict=compact_verdict(report),
        note=f"{metric}={v.challenger:.4f} vs champion "
        f"{'none' if v.champion is None else f'{v.champion:.4f}'} ({v.basis}): "
        f"{'better' if v.better else 'not better'}" + (f" ({v.reason})" if v.reason else "")
        + (f"; {registry_error}" if registry_error else ""),
    )
    logger.info("evaluated", extra={"run_id": run.run_id, "metric": metric, "value": v.challenger,
                                    "champion": v.champion, "better": v.better, "basis": v.basis, "source": source})
    result = {
        "better": v.better, "run_id": run.run_id, "dataset": run.dataset.name, "job_name": event.training.job_name,
        "metric": metric, "challenger": v.challenger, "champion": v.champion, "delta": v.delta,
        "deltas": {r["metric"]: r["delta"] for r in v.table if r["split"] == "val" and r["delta"] is not None},
        "basis": v.basis, "like_for_like": v.like_for_like, "compared_with": v.compared_with,
        "min_improvement": settings.min_improvement, "min_first_metric": settings.min_first_metric,
        "metrics": metrics, "metrics_source": source,
        "champion_metrics": champion_metrics, "champion_run_id": v.compared_with,
        "model_artifacts": artifacts, "model_package_arn": package_arn, "verdict": compact_verdict(report),
    }
    for key, text in (("reason", v.reason), ("warning", warning), ("registry_error", registry_error)):
        if text:
            result[key] = text
    return result
