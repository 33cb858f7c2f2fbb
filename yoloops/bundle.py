"""CLI side of models: pretrained weights in, champion bundles out, and champion changes by hand.

A layer above yoloops.client (it takes a Stack); client never imports it.

The same yoloops_core functions the Promote step uses (bundle copy, repair, registry approvals) run
here with the CLI's clients, so a manual promote or rollback leaves champion/, the record and the
Model Registry agreeing exactly as an automatic promotion does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yoloops_core.models import EventType, RunStatus

from yoloops.client import CliError, NotFound, Stack

PRETRAINED_PREFIX = "models/pretrained/"


def registry_for(stack: Stack) -> Any:
    """The stack's Model Registry adapter (groups "<NamePrefix>-<dataset>", as the functions name them)."""
    from yoloops_core.registry import ModelRegistry

    return ModelRegistry(stack.client("sagemaker"), stack.parameter("NamePrefix") or "yoloops")


def publish_champion(stack: Stack, dataset: str, run: dict[str, Any]) -> dict[str, Any]:
    """After the record changed by hand: champion/ = the run's bundle (extracted from its training output
    when it was never promoted), registry approvals synced. Returns the repair report."""
    from yoloops_core.promote import ModelFilesMissing, ensure_version, repair_champion

    try:
        ensure_version(stack.client("s3"), stack.bucket, {**run, "dataset": dataset})
    except ModelFilesMissing as exc:
        raise CliError(str(exc)) from exc
    return repair_champion(dataset, stack.store, stack.client("s3"), bucket=stack.bucket,
                           registry=registry_for(stack), sleep=lambda _s: None)


def check_model_files(stack: Stack, run: dict[str, Any]) -> None:
    """Refuse a manual promote before touching the record when the run has no model at all."""
    from yoloops_core.promote import REQUIRED_FILE, list_files, version_prefix

    s3 = stack.client("s3")
    if REQUIRED_FILE in list_files(s3, stack.bucket, version_prefix(run["dataset"], run["run_id"])):
        return
    jobs = list(run.get("job_names") or [])
    if not jobs:
        raise CliError(f"run {run['run_id']} has no training job, so it has no model to promote")
    key = f"runs/{run['run_id']}/output/{jobs[-1]}/output/model.tar.gz"
    try:
        s3.head_object(Bucket=stack.bucket, Key=key)
    except Exception as exc:
        raise CliError(f"run {run['run_id']} has no model artifact at s3://{stack.bucket}/{key}") from exc


def push_weights(stack: Stack, path: Path, name: str | None = None) -> str:
    """Upload a .pt under models/pretrained/ (the BaseWeights / --weights / yaml `weights:` name)."""
    from yoloops_core.weights import InvalidBaseWeights, normalize

    if not path.is_file():
        raise CliError(f"{path} is not a file")
    if path.suffix != ".pt":
        raise CliError(f"{path} is not a .pt weights file")
    try:
        key = normalize(name or path.name, stack.bucket)
    except InvalidBaseWeights as exc:
        raise CliError(str(exc)) from exc
    if key == "champion" or not key:
        raise CliError(f"{name!r} is not a weights file name")
    stack.client("s3").upload_file(str(path), stack.bucket, key)
    return key


def check_weights(stack: Stack, spec: str, dataset: str) -> str:
    """Validate a `dataset push --weights` value now, not minutes later in the workflow."""
    from yoloops_core.weights import CHAMPION, InvalidBaseWeights, normalize

    try:
        key = normalize(spec, stack.bucket)
    except InvalidBaseWeights as exc:
        raise CliError(str(exc)) from exc
    if key and key != CHAMPION:
        try:
            stack.client("s3").head_object(Bucket=stack.bucket, Key=key)
        except Exception as exc:
            raise CliError(f"base weights s3://{stack.bucket}/{key} not found: "
                           f"`yoloops weights push {key.rsplit('/', 1)[-1]}` first") from exc
    return key or ""


def champion_files(stack: Stack, dataset: str) -> dict[str, int]:
    from yoloops_core.promote import champion_prefix, list_files

    return list_files(stack.client("s3"), stack.bucket, champion_prefix(dataset))


def download_champion(stack: Stack, dataset: str, dest: Path) -> list[Path]:
    """Every file of the champion bundle into `dest` (relative paths kept: the OpenVINO folder)."""
    from yoloops_core.promote import champion_prefix

    stack.require_champion(dataset)
    files = champion_files(stack, dataset)
    if not files:
        raise NotFound(f"dataset {dataset!r} has a champion record but no files under "
                       f"s3://{stack.bucket}/{champion_prefix(dataset)} (`yoloops champion {dataset} --repair`)")
    s3 = stack.client("s3")
    out = []
    root = dest.resolve()
    for rel in sorted(files):
        target = (dest / rel).resolve()
        if root not in target.parents:
            raise CliError(f"refusing to write {rel!r} outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(stack.bucket, champion_prefix(dataset) + rel, str(target))
        out.append(target)
    return out


def repair(stack: Stack, dataset: str) -> dict[str, Any]:
    from yoloops_core.promote import repair_champion

    stack.require_champion(dataset)
    return repair_champion(dataset, stack.store, stack.client("s3"), bucket=stack.bucket,
                           registry=registry_for(stack), sleep=lambda _s: None)


# ---------------------------------------------------------------- champion changes by hand

def promote(stack: Stack, run_id: str, user: str) -> dict[str, Any]:
    """Make a finished run the champion of its dataset (manual override): recorded and notified."""
    run = stack.get_run(run_id)
    dataset = run.get("dataset")
    if not dataset:
        raise CliError(f"run {run_id} has no dataset")
    status = run.get("status")
    if status not in (RunStatus.PROMOTED, RunStatus.KEPT) or not run.get("metrics"):
        raise CliError(f"run {run_id} is {status}: only a finished run with a model (PROMOTED or KEPT) can be promoted")
    previous = stack.get_champion(dataset)
    check_model_files(stack, {**run, "dataset": dataset})
    model_key = f"models/{dataset}/versions/{run_id}/best.pt"
    metric = previous.get("metric") if previous else None
    metric = metric or stack.parameter("PromotionMetric") or "mAP50-95"
    metrics = _floats(run.get("metrics"))
    champion = stack.store.set_champion_manually(
        dataset, run_id, metric, metrics.get(metric), metrics, model_key, actor=user)
    # The whole bundle to champion/, registry approvals to match (yoloops_core.promote).
    publish_champion(stack, dataset, run)
    was = previous.get("run_id") if previous else None
    stack.notify(EventType.MANUAL_PROMOTE, dataset, run_id,
                 f"{user} made {run_id} the champion of {dataset} by hand (was {was or 'none'}).",
                 metrics=metrics, version=run.get("dataset_version"))
    return {"dataset": dataset, "champion": champion, "previous_run_id": was}


def rollback(stack: Stack, dataset: str, user: str) -> dict[str, Any]:
    """Put the previous champion of a dataset back: recorded and notified."""
    current = stack.require_champion(dataset)
    if not current.get("previous_run_id"):
        raise CliError(f"dataset {dataset!r}: champion {current.get('run_id')} has no previous champion to roll back to")
    from yoloops_core.store import StoreError

    try:
        champion = stack.store.rollback_champion(dataset, actor=user)
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    restored = champion.get("run_id")
    if restored:
        publish_champion(stack, dataset, stack.get_run(restored))
    stack.notify(EventType.ROLLBACK, dataset, restored,
                 f"{user} rolled {dataset} back from {current.get('run_id')} to {restored}.",
                 metrics=_floats(champion.get("metrics")))
    return {"dataset": dataset, "champion": champion, "rolled_back_run_id": current.get("run_id")}


def _floats(metrics: Any) -> dict[str, float]:
    out = {}
    for k, v in (metrics or {}).items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out
