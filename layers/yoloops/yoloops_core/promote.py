"""Promotion: model files to models/<dataset>/versions/<run id>/, then the champion.

Order matters: versions/ first (harmless if we lose), then the conditional champion write (the
single point of truth: a worse model finishing later cannot win it), and only then champion/.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict

from yoloops_core.evaluate import split_s3_uri
from yoloops_core.models import RunContext

logger = Logger(child=True)

MODEL_FILES = ("best.pt", "metrics.json")


class ModelFilesMissing(RuntimeError):
    """The model artifact has no best.pt to promote."""


class Evaluation(BaseModel):
    """The Evaluate step's result (`$.evaluation.result`)."""

    model_config = ConfigDict(extra="allow")

    better: bool
    metric: str
    challenger: float
    metrics: dict[str, float]
    model_artifacts: str | None = None


class PromoteEvent(BaseModel):
    run: RunContext
    evaluation: Evaluation


def version_prefix(dataset: str, run_id: str) -> str:
    return f"models/{dataset}/versions/{run_id}/"


def champion_prefix(dataset: str) -> str:
    return f"models/{dataset}/champion/"


class _StreamReader(io.RawIOBase):
    """A tar member read from a streamed (non-seekable) archive, shaped as s3transfer expects."""

    def __init__(self, member: Any) -> None:
        self._member = member

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        return self._member.read(size if size is not None and size >= 0 else None)


def store_version(s3: Any, model_artifacts: str, bucket: str, prefix: str,
                  metrics: dict[str, float]) -> None:
    """Stream model.tar.gz from S3 and upload best.pt and metrics.json under `prefix`."""
    src_bucket, src_key = split_s3_uri(model_artifacts)
    body = s3.get_object(Bucket=src_bucket, Key=src_key)["Body"]
    found: set[str] = set()
    with tarfile.open(fileobj=body, mode="r|gz") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            # best.pt may sit at the top or under weights/; the top-level one wins if both exist.
            base = name.rsplit("/", 1)[-1]
            if not member.isfile() or base not in MODEL_FILES or (base in found and "/" in name):
                continue
            s3.upload_fileobj(_StreamReader(tar.extractfile(member)), bucket, prefix + base)
            found.add(base)
    if "best.pt" not in found:
        raise ModelFilesMissing(f"{model_artifacts} has no best.pt")
    if "metrics.json" not in found:
        s3.put_object(Bucket=bucket, Key=prefix + "metrics.json", Body=json.dumps(metrics).encode(),
                      ContentType="application/json")


def copy_version(s3: Any, bucket: str, src_prefix: str, dst_prefix: str) -> None:
    for name in MODEL_FILES:
        s3.copy_object(Bucket=bucket, Key=dst_prefix + name, CopySource={"Bucket": bucket, "Key": src_prefix + name})


def promote(event: PromoteEvent, *, bucket: str, store: Any, s3: Any, now: datetime | None = None) -> dict[str, Any]:
    run, ev = event.run, event.evaluation
    dataset = run.dataset.name
    if not ev.model_artifacts:
        raise ModelFilesMissing(f"run {run.run_id}: the evaluation has no model artifact to promote")
    versions = version_prefix(dataset, run.run_id)
    champion_dir = champion_prefix(dataset)
    store_version(s3, ev.model_artifacts, bucket, versions, ev.metrics)
    won = store.put_champion_if_better(dataset, run.run_id, ev.metric, ev.challenger, ev.metrics,
                                       model_key=versions + "best.pt", now=now)
    result: dict[str, Any] = {"promoted": won, "run_id": run.run_id, "dataset": dataset,
                              "version_key": versions + "best.pt", "metric": ev.metric, "value": ev.challenger}
    if not won:
        current = store.get_champion(dataset) or {}
        result["reason"] = (f"champion {current.get('run_id')} has {ev.metric}="
                            f"{current.get('metric_value')} >= {ev.challenger} (it finished first)")
        result["champion_run_id"] = current.get("run_id")
        logger.info("promotion lost the conditional write", extra=result)
        return result
    copy_version(s3, bucket, versions, champion_dir)
    # Two winners in a row (worse then better) may copy in the wrong order; the record decides, so
    # make champion/ match it.
    current = store.get_champion(dataset) or {}
    if current.get("run_id") not in (None, run.run_id):
        copy_version(s3, bucket, version_prefix(dataset, current["run_id"]), champion_dir)
        result.update(promoted=False, champion_run_id=current["run_id"],
                      reason=f"a better model ({current['run_id']}) became champion meanwhile")
        return result
    result["champion_key"] = champion_dir + "best.pt"
    result["previous_run_id"] = current.get("previous_run_id")
    logger.info("promoted", extra=result)
    return result



# ---------------------------------------------------------------- manual overrides (CLI)

def manual_promote(run_id: str, *, bucket: str, store: Any, s3: Any, actor: str = "cli",
                   metric: str = "mAP50-95") -> dict[str, Any]:
    """CLI `promote RUN`: make a run's stored version the champion regardless of its metric."""
    record = store.get_run(run_id)
    if not record or not record.get("dataset"):
        raise ValueError(f"unknown run {run_id!r}")
    dataset = record["dataset"]
    versions = version_prefix(dataset, run_id)
    try:
        s3.head_object(Bucket=bucket, Key=versions + "best.pt")
    except Exception as exc:
        raise ModelFilesMissing(f"run {run_id} has no stored model at s3://{bucket}/{versions}best.pt") from exc
    metrics = record.get("metrics") or {}
    champion = store.set_champion_manually(dataset, run_id, metric, metrics.get(metric), metrics,
                                           model_key=versions + "best.pt", actor=actor)
    copy_version(s3, bucket, versions, champion_prefix(dataset))
    return champion


def rollback(dataset: str, *, bucket: str, store: Any, s3: Any, actor: str = "cli") -> dict[str, Any]:
    """CLI `rollback DATASET`: the previous champion's files and record come back."""
    champion = store.rollback_champion(dataset, actor=actor)
    copy_version(s3, bucket, version_prefix(dataset, champion["run_id"]), champion_prefix(dataset))
    return champion
