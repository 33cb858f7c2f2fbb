"""Promotion: the model bundle to models/<dataset>/versions/<run id>/, then the champion.

Order matters: versions/ first (harmless if we lose), then the conditional champion write (the single
point of truth: a worse model finishing later cannot win it), and only then champion/. Every champion
file carries the run id it was copied for (object metadata `yoloops-run-id`), so `repair_champion` can
tell whether champion/ holds exactly the recorded champion's bundle and put it right if not; Promote
ends with it, and the watchdog calls it too. Re-invoking Promote for a run is harmless (idempotent).
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict

from yoloops_core.evaluate import split_s3_uri
from yoloops_core.models import RunContext
from yoloops_core.verdict import PAIRED
from yoloops_core.verdict_report import verdict_key, write_verdict

logger = Logger(child=True)

RUN_ID_METADATA = "yoloops-run-id"
REQUIRED_FILE = "best.pt"
# Training state, not deployment files: never part of a bundle.
SKIPPED_NAMES = frozenset({"last.pt"})
COPY_ATTEMPTS = 4
COPY_BACKOFF_S = 0.5

_UNSET: Any = object()


class ModelFilesMissing(RuntimeError):
    """The model artifact has no best.pt to promote."""


class PromotionCopyFailed(RuntimeError):
    """Copying the bundle kept failing after retries; the champion record is the truth, and
    repair_champion (Promote re-run, the watchdog) makes champion/ match it."""


class Evaluation(BaseModel):
    """The Evaluate step's result (`$.evaluation.result`)."""

    model_config = ConfigDict(extra="allow")

    better: bool
    metric: str
    challenger: float
    metrics: dict[str, float]
    model_artifacts: str | None = None
    min_improvement: float = 0.0
    model_package_arn: str | None = None
    # The verdict's basis (paired | recorded | first) and the champion it was reached against; absent in
    # results of older runs (then the write compares recorded numbers only, as before).
    basis: str | None = None
    compared_with: str | None = None


class PromoteEvent(BaseModel):
    run: RunContext
    evaluation: Evaluation


def record_promotion(s3: Any, bucket: str, run: RunContext, *, promoted: bool, reason: str | None) -> None:
    """verdict.json says what became of the verdict: a better model can still lose the conditional write."""
    key = verdict_key(run)
    try:
        report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception:  # no verdict.json (an older run): nothing to complete
        logger.info("no verdict.json to complete", extra={"run_id": run.run_id})
        return
    report["promotion"] = {"promoted": promoted, **({"reason": reason} if reason else {})}
    write_verdict(s3, bucket, run, report)


def version_prefix(dataset: str, run_id: str) -> str:
    return f"models/{dataset}/versions/{run_id}/"


def champion_prefix(dataset: str) -> str:
    return f"models/{dataset}/champion/"


def with_retries(fn: Callable[[], Any], what: str, *, attempts: int = COPY_ATTEMPTS,
                 backoff_s: float = COPY_BACKOFF_S, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run `fn` until it succeeds, `attempts` times at most with exponential backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except ModelFilesMissing:
            raise  # the archive is what it is: retrying cannot add a best.pt
        except Exception as exc:
            if attempt == attempts:
                raise PromotionCopyFailed(f"{what} failed {attempts} times: {type(exc).__name__}: {exc}") from exc
            logger.warning("copy failed, retrying", extra={"what": what, "attempt": attempt, "error": str(exc)})
            sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


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


def _bundle_name(name: str, found: set[str]) -> str | None:
    """Where an archive member goes in the bundle (None = not part of it)."""
    name = name.lstrip("./")
    base = name.rsplit("/", 1)[-1]
    if not name or base in SKIPPED_NAMES or ".." in name.split("/"):
        return None
    if base == REQUIRED_FILE and name != REQUIRED_FILE:
        # Older containers kept it under weights/; a top-level best.pt wins.
        return None if REQUIRED_FILE in found else REQUIRED_FILE
    return name


def store_version(s3: Any, model_artifacts: str, bucket: str, prefix: str,
                  metrics: dict[str, float]) -> list[str]:
    """Stream model.tar.gz from S3 and upload every bundle file under `prefix` (relative paths kept:
    best.pt, ONNX, the OpenVINO folder, TorchScript, model.json, DEPLOY.md, metrics.json...).
    Returns the bundle's relative names. best.pt is required."""
    src_bucket, src_key = split_s3_uri(model_artifacts)
    body = s3.get_object(Bucket=src_bucket, Key=src_key)["Body"]
    found: set[str] = set()
    with tarfile.open(fileobj=body, mode="r|gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            dest = _bundle_name(member.name, found)
            if dest is None:
                continue
            s3.upload_fileobj(_StreamReader(tar.extractfile(member)), bucket, prefix + dest)
            found.add(dest)
    if REQUIRED_FILE not in found:
        raise ModelFilesMissing(f"{model_artifacts} has no {REQUIRED_FILE}")
    if "metrics.json" not in found:
        s3.put_object(Bucket=bucket, Key=prefix + "metrics.json", Body=json.dumps(metrics).encode(),
                      ContentType="application/json")
        found.add("metrics.json")
    return sorted(found)


def list_files(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    """{relative name: size} of every object under `prefix`."""
    out: dict[str, int] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        resp = s3.list_objects_v2(**kwargs)
        for obj in resp.get("Contents") or []:
            rel = obj["Key"][len(prefix):]
            if rel and not rel.endswith("/"):
                out[rel] = int(obj.get("Size") or 0)
        if not resp.get("IsTruncated"):
            return out
        token = resp.get("NextContinuationToken")


def publish_champion_files(s3: Any, bucket: str, dataset: str, run_id: str) -> list[str]:
    """Make champion/ hold exactly versions/<run id>/: copy each file (tagged with the run id), then
    delete what the previous bundle had and this one has not."""
    src = version_prefix(dataset, run_id)
    dst = champion_prefix(dataset)
    files = list_files(s3, bucket, src)
    if REQUIRED_FILE not in files:
        raise ModelFilesMissing(f"run {run_id} has no stored model at s3://{bucket}/{src}{REQUIRED_FILE}")
    for rel in sorted(files, key=lambda r: (r == REQUIRED_FILE, r)):  # best.pt last: it is what loaders look for
        s3.copy_object(Bucket=bucket, Key=dst + rel, CopySource={"Bucket": bucket, "Key": src + rel},
                       Metadata={RUN_ID_METADATA: run_id}, MetadataDirective="REPLACE")
    for rel in set(list_files(s3, bucket, dst)) - set(files):
        s3.delete_object(Bucket=bucket, Key=dst + rel)
    return sorted(files)


def champion_files_match(s3: Any, bucket: str, dataset: str, run_id: str) -> tuple[bool, str]:
    """Whether champion/ holds exactly run_id's bundle (names, sizes, run-id tags); (ok, why not)."""
    want = list_files(s3, bucket, version_prefix(dataset, run_id))
    have = list_files(s3, bucket, champion_prefix(dataset))
    if not want:
        return False, f"versions/{run_id}/ is empty"
    if set(want) != set(have):
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        return False, f"champion/ differs from versions/{run_id}/ (missing {missing[:5]}, extra {extra[:5]})"
    for rel, size in want.items():
        if have[rel] != size:
            return False, f"champion/{rel} has {have[rel]} bytes, versions/{run_id}/{rel} {size}"
        tagged = s3.head_object(Bucket=bucket, Key=champion_prefix(dataset) + rel).get("Metadata") or {}
        if tagged.get(RUN_ID_METADATA) != run_id:
            return False, f"champion/{rel} was copied for {tagged.get(RUN_ID_METADATA) or 'an unknown run'}"
    return True, ""


def _registry(registry: Any) -> Any:
    if registry is not _UNSET:
        return registry
    from yoloops_core import registry as reg
    from yoloops_core.config import get_settings

    return reg.from_settings(get_settings())


def repair_champion(dataset: str, store: Any, s3: Any, *, bucket: str | None = None, registry: Any = _UNSET,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Make champion/ (and the registry's approvals) match the champion record; safe to run any time,
    concurrently too (every run converges on the record). Returns what it found and did."""
    if bucket is None:
        from yoloops_core.config import get_settings

        bucket = get_settings().artifacts_bucket
    record = store.get_champion(dataset)
    result: dict[str, Any] = {"dataset": dataset, "champion_run_id": (record or {}).get("run_id"),
                              "repaired": False}
    if not record or not record.get("run_id"):
        return result
    run_id = record["run_id"]
    ok, why = champion_files_match(s3, bucket, dataset, run_id)
    if not ok:
        logger.warning("champion files disagree with the record: repairing",
                       extra={"dataset": dataset, "run_id": run_id, "why": why})
        result["files"] = with_retries(lambda: publish_champion_files(s3, bucket, dataset, run_id),
                                       f"copying the bundle of {run_id} to champion/", sleep=sleep)
        result.update(repaired=True, why=why)
    reg = _registry(registry)
    if reg is not None:
        arn = (store.get_run(run_id) or {}).get("model_package_arn")
        try:
            result["registry"] = reg.sync_approvals(dataset, run_id, arn, reason=f"champion of {dataset}")
        except Exception as exc:  # files are what deployments read; reported, retried next sweep
            logger.exception("model registry: approval sync failed", extra={"dataset": dataset})
            result["registry_error"] = f"model registry: {type(exc).__name__}: {exc}"[:500]
    return result


def _reject_own(registry: Any, arn: str | None, reason: str) -> str | None:
    if registry is None or not arn:
        return None
    from yoloops_core.registry import REJECTED

    try:
        registry.set_status(arn, REJECTED, reason)
    except Exception as exc:  # reported in the result and the notification
        logger.exception("model registry: rejecting the package failed")
        return f"model registry: {type(exc).__name__}: {exc}"[:500]
    return None


def promote(event: PromoteEvent, *, bucket: str, store: Any, s3: Any, registry: Any = None,
            now: datetime | None = None, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    run, ev = event.run, event.evaluation
    dataset = run.dataset.name
    if not ev.model_artifacts:
        raise ModelFilesMissing(f"run {run.run_id}: the evaluation has no model artifact to promote")
    versions = version_prefix(dataset, run.run_id)
    bundle = with_retries(lambda: store_version(s3, ev.model_artifacts, bucket, versions, ev.metrics),
                          f"storing the bundle of {run.run_id} in versions/", sleep=sleep)
    identity = {} if ev.basis is None else {"compared_with": ev.compared_with, "paired": ev.basis == PAIRED}
    won = store.put_champion_if_better(dataset, run.run_id, ev.metric, ev.challenger, ev.metrics,
                                       model_key=versions + REQUIRED_FILE, now=now,
                                       min_improvement=ev.min_improvement, **identity)
    result: dict[str, Any] = {"promoted": won, "run_id": run.run_id, "dataset": dataset,
                              "version_key": versions + REQUIRED_FILE, "bundle": bundle, "metric": ev.metric,
                              "value": ev.challenger, "model_package_arn": ev.model_package_arn}
    if not won:
        current = store.get_champion(dataset) or {}
        if ev.basis is not None and current.get("run_id") != ev.compared_with:
            result["reason"] = (f"the champion changed during training: {current.get('run_id')} became champion, "
                                f"but this run was compared with {ev.compared_with or 'no champion'}; kept (train "
                                "it again to compare it with the new champion)")
        else:
            result["reason"] = (f"champion {current.get('run_id')} has {ev.metric}="
                                f"{current.get('metric_value')}, not beaten by {ev.challenger} by at least "
                                f"MinImprovement {ev.min_improvement:g} (it finished first)")
        record_promotion(s3, bucket, run, promoted=False, reason=result["reason"])
        result["champion_run_id"] = current.get("run_id")
        error = _reject_own(registry, ev.model_package_arn, f"not champion: {result['reason']}")
        if error:
            result["registry_error"] = error
        logger.info("promotion lost the conditional write", extra=result)
        return result
    # The record is the truth from here on; copy failures are retried, then repaired.
    with_retries(lambda: publish_champion_files(s3, bucket, dataset, run.run_id),
                 f"copying the bundle of {run.run_id} to champion/", sleep=sleep)
    # A concurrent winner may have copied in between: converge on the record (and sync the registry).
    repair = repair_champion(dataset, store, s3, bucket=bucket, registry=registry, sleep=sleep)
    if repair.get("registry_error"):
        result["registry_error"] = repair["registry_error"]
    current = store.get_champion(dataset) or {}
    if current.get("run_id") != run.run_id:
        result.update(promoted=False, champion_run_id=current.get("run_id"),
                      reason=f"a better model ({current.get('run_id')}) became champion meanwhile")
        return result
    result["champion_key"] = champion_prefix(dataset) + REQUIRED_FILE
    result["previous_run_id"] = current.get("previous_run_id")
    record_promotion(s3, bucket, run, promoted=True, reason=None)
    logger.info("promoted", extra=result)
    return result


# ---------------------------------------------------------------- manual overrides (CLI)

def ensure_version(s3: Any, bucket: str, record: dict[str, Any]) -> str:
    """versions/<run id>/ of a finished run, extracted from its training output when it was never
    promoted (a KEPT run). Returns the prefix."""
    run_id, dataset = record["run_id"], record["dataset"]
    prefix = version_prefix(dataset, run_id)
    if REQUIRED_FILE in list_files(s3, bucket, prefix):
        return prefix
    jobs = list(record.get("job_names") or [])
    if not jobs:
        raise ModelFilesMissing(f"run {run_id} has no training job, so it has no model to promote")
    artifacts = f"s3://{bucket}/runs/{run_id}/output/{jobs[-1]}/output/model.tar.gz"
    try:
        store_version(s3, artifacts, bucket, prefix, record.get("metrics") or {})
    except ModelFilesMissing:
        raise
    except Exception as exc:
        raise ModelFilesMissing(f"run {run_id} has no model artifact at {artifacts}: {exc}") from exc
    return prefix


def manual_promote(run_id: str, *, bucket: str, store: Any, s3: Any, actor: str = "cli",
                   metric: str = "mAP50-95", registry: Any = None) -> dict[str, Any]:
    """CLI `promote RUN`: make a run's model the champion regardless of its metric."""
    record = store.get_run(run_id)
    if not record or not record.get("dataset"):
        raise ValueError(f"unknown run {run_id!r}")
    dataset = record["dataset"]
    versions = ensure_version(s3, bucket, record)
    metrics = record.get("metrics") or {}
    champion = store.set_champion_manually(dataset, run_id, metric, metrics.get(metric), metrics,
                                           model_key=versions + REQUIRED_FILE, actor=actor)
    champion["repair"] = repair_champion(dataset, store, s3, bucket=bucket, registry=registry)
    return champion


def rollback(dataset: str, *, bucket: str, store: Any, s3: Any, actor: str = "cli",
             registry: Any = None) -> dict[str, Any]:
    """CLI `rollback DATASET`: the previous champion's files, record and registry approval come back."""
    champion = store.rollback_champion(dataset, actor=actor)
    record = store.get_run(champion["run_id"]) or {"run_id": champion["run_id"], "dataset": dataset}
    ensure_version(s3, bucket, {**record, "dataset": dataset})
    champion["repair"] = repair_champion(dataset, store, s3, bucket=bucket, registry=registry)
    return champion
