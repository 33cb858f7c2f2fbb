"""Like-for-like: which champion a run is compared with, and what data each model saw.

At validation the run records the dataset's champion (`run.champion`); the plan hands its best.pt to the
job as the `champion` channel, and the job scores both models on this version's val (and test) images.
Each validated version leaves its content record, `runs/<run id>/data_index.json` (split -> image path ->
fingerprint), so Evaluate can tell what changed against the champion's version and which val images the
champion trained on.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from yoloops_core.models import ChampionRef
from yoloops_core.weights import object_exists

logger = Logger(child=True)

CHANNEL = "champion"
EXAMPLES = 5


def data_index_key(run_id: str) -> str:
    return f"runs/{run_id}/data_index.json"


def champion_ref(champion: dict[str, Any] | None, *, s3: Any, bucket: str, dataset: str) -> ChampionRef | None:
    """The champion as the run will be compared with it; its weights checked now, so a missing file
    becomes a recorded-number verdict that says so, not a job that fails on an empty channel."""
    if not champion or not champion.get("run_id"):
        return None
    run_id = str(champion["run_id"])
    key = champion.get("model_key") or f"models/{dataset}/versions/{run_id}/best.pt"
    value = champion.get("metric_value")
    ref = ChampionRef(run_id=run_id, model_key=key, metric=champion.get("metric"),
                      metric_value=float(value) if isinstance(value, (int, float)) else None)
    if not object_exists(s3, bucket, key):
        ref.model_key = None
        ref.missing_reason = f"the champion's weights s3://{bucket}/{key} are missing"
    return ref


def champion_channel(bucket: str, ref: ChampionRef | None) -> dict[str, Any] | None:
    """The `champion` input channel (the job finds the .pt in /opt/ml/input/data/champion/)."""
    if ref is None or not ref.model_key:
        return None
    return {"ChannelName": CHANNEL, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{ref.model_key}",
        "S3DataDistributionType": "FullyReplicated"}}}


def write_data_index(s3: Any, bucket: str, run_id: str, *, dataset: str, version: str, names: list[str],
                     index: dict[str, dict[str, str]]) -> str:
    key = data_index_key(run_id)
    body = {"dataset": dataset, "version": version, "names": names, "splits": index}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body, separators=(",", ":")).encode(),
                  ContentType="application/json")
    return key


def read_data_index(s3: Any, bucket: str, run_id: str) -> dict[str, Any] | None:
    """A run's content record, or None (runs validated before records existed, or a deleted object)."""
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=data_index_key(run_id))["Body"].read())
    except Exception as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")
        if code in ("NoSuchKey", "404", "NotFound", "AccessDenied", "403") or isinstance(exc, (KeyError, ValueError)):
            logger.info("no data index", extra={"run_id": run_id, "error": code or type(exc).__name__})
            return None
        raise


def _split_diff(new: dict[str, str], old: dict[str, str]) -> dict[str, int]:
    return {"added": len(new.keys() - old.keys()), "removed": len(old.keys() - new.keys()),
            "changed": sum(1 for p in new.keys() & old.keys() if new[p] != old[p] and new[p] and old[p]),
            "images": len(new)}


def data_diff(new: dict[str, Any] | None, old: dict[str, Any] | None) -> dict[str, Any]:
    """This version's data against the champion's: images added/removed/changed per split, how much of
    val is new, classes added/removed, and val images the champion trained on (they inflate its score)."""
    if not new:
        return {"available": False, "reason": "this run has no data record"}
    if not old:
        return {"available": False, "reason": "the champion's version has no data record (validated before "
                                              "yoloops kept one)"}
    splits_new, splits_old = new.get("splits") or {}, old.get("splits") or {}
    diff: dict[str, Any] = {"available": True, "champion_version": old.get("version"),
                            "splits": {s: _split_diff(splits_new.get(s) or {}, splits_old.get(s) or {})
                                       for s in sorted(set(splits_new) | set(splits_old))}}
    names_new, names_old = list(new.get("names") or []), list(old.get("names") or [])
    diff["classes_added"] = [n for n in names_new if n not in names_old]
    diff["classes_removed"] = [n for n in names_old if n not in names_new]
    val = splits_new.get("val") or {}
    old_content = {fp for split in splits_old.values() for fp in split.values() if fp}
    old_paths = {p for split in splits_old.values() for p in split}
    seen = sum(1 for p, fp in val.items() if (fp and fp in old_content) or (not fp and p in old_paths))
    diff["val_new_share"] = round(1 - seen / len(val), 4) if val else None
    champion_train = splits_old.get("train") or {}
    train_content = {fp for fp in champion_train.values() if fp}
    leaked = sorted(p for p, fp in val.items() if fp and fp in train_content)
    diff["val_in_champion_train"] = len(leaked)
    diff["val_in_champion_train_examples"] = leaked[:EXAMPLES]
    return diff
