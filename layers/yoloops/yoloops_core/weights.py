"""Base weights: which .pt a run starts from, resolved once when the run starts.

Spec (template parameter BaseWeights, a release's yaml `weights:`, `yoloops dataset push --weights`,
carried in the version's manifest.json as `weights`), first non-empty wins in that order of precedence
(run request, manifest, stack default):
  ""              -> none: the model YAML (DEFAULT_MODEL / hyperparameter `model`) is built from scratch;
  "champion"      -> the dataset's current champion (its immutable versions/<run id>/best.pt); no
                     champion yet -> the model YAML;
  "yolo12s.pt", "models/pretrained/yolo12s.pt", "s3://<this bucket>/models/pretrained/yolo12s.pt"
                  -> that object, which must exist (`yoloops weights push` puts it there).
The plan passes the object as the `weights` channel (SageMaker copies it into
/opt/ml/input/data/weights/) and its file name as the `model` hyperparameter: the container never
downloads anything.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aws_lambda_powertools import Logger

from yoloops_core.models import DATASETS_PREFIX, DatasetRef, InvalidInput

logger = Logger(child=True)

PRETRAINED_PREFIX = "models/pretrained/"
CHAMPION = "champion"
SCRATCH = "scratch:"  # run record value when no weights: "scratch:<model yaml>"
_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,3}\.pt$")
_VERSION_KEY = re.compile(r"^models/(?P<dataset>[^/]+)/versions/(?P<run>[^/]+)/best\.pt$")


class InvalidBaseWeights(InvalidInput):
    """A base-weights spec that names nothing yoloops may train from."""


class BaseWeightsNotFound(RuntimeError):
    """The named pretrained weights are not in S3: the run is stopped before any job starts."""


def normalize(spec: str | None, bucket: str) -> str:
    """"" | "champion" | an S3 key under models/pretrained/; anything else raises InvalidBaseWeights."""
    text = (spec or "").strip()
    if not text:
        return ""
    if text.lower() == CHAMPION:
        return CHAMPION
    if text.startswith("s3://"):
        where, _, key = text[5:].partition("/")
        if where != bucket:
            raise InvalidBaseWeights(
                f"base weights {text!r} are in bucket {where!r}; a run reads weights only from this stack's "
                f"bucket: push them with `yoloops weights push FILE` (s3://{bucket}/{PRETRAINED_PREFIX}<name>.pt)")
        text = key
    key = text if text.startswith(PRETRAINED_PREFIX) else PRETRAINED_PREFIX + text
    rest = key[len(PRETRAINED_PREFIX):]
    if text.startswith("models/") and not text.startswith(PRETRAINED_PREFIX):
        raise InvalidBaseWeights(
            f"base weights {spec!r} must be a key under {PRETRAINED_PREFIX} (e.g. {PRETRAINED_PREFIX}yolo12s.pt), "
            f"a .pt name relative to it (yolo12s.pt, coco/yolo12s.pt) or 'champion'")
    if not _PATH.match(rest) or ".." in rest:
        raise InvalidBaseWeights(
            f"base weights {spec!r} must name a .pt file (letters, digits, '.', '_', '-') under "
            f"{PRETRAINED_PREFIX}, or be 'champion' or empty")
    return key


def manifest_weights(s3: Any, bucket: str, dataset: DatasetRef) -> str | None:
    """The optional `weights` field of the version's manifest.json (written by `dataset push --weights`)."""
    if dataset.format != "dir":
        return None
    key = f"{DATASETS_PREFIX}{dataset.name}/{dataset.version}/manifest.json"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404", "NotFound") or isinstance(exc, KeyError):
            return None  # a version completed by quiet time has no manifest
        raise
    try:
        value = json.loads(body).get("weights")
    except (ValueError, AttributeError):
        return None  # the validator reports a broken manifest
    return value if isinstance(value, str) and value.strip() else None


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except Exception as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")
        # S3 answers a HEAD of a missing key with 403 to a caller that may not list the prefix.
        if code in ("404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden") or isinstance(exc, KeyError):
            return False
        raise


def resolve(spec: str | None, *, dataset: str, bucket: str, store: Any, s3: Any) -> str | None:
    """The S3 key of the .pt the run starts from, or None (the model YAML, from scratch)."""
    spec = normalize(spec, bucket)
    if not spec:
        return None
    if spec == CHAMPION:
        champion = store.get_champion(dataset)
        if not champion or not champion.get("run_id"):
            logger.info("no champion yet: training from the model YAML", extra={"dataset": dataset})
            return None
        key = f"models/{dataset}/versions/{champion['run_id']}/best.pt"
        if not object_exists(s3, bucket, key):
            raise BaseWeightsNotFound(
                f"base weights 'champion': champion {champion['run_id']} of {dataset} has no s3://{bucket}/{key} "
                f"(repair it with `yoloops champion {dataset} --repair`, or set the run's weights)")
        return key
    if not object_exists(s3, bucket, spec):
        raise BaseWeightsNotFound(
            f"base weights s3://{bucket}/{spec} not found (or not readable): upload them with "
            f"`yoloops weights push {spec.rsplit('/', 1)[-1]}` or fix BaseWeights / the run's weights")
    return spec


def scratch_model(hyperparameters: dict[str, str], settings: Any) -> str:
    """The model YAML a run without base weights builds: the plan's precedence (run, stack defaults)."""
    return hyperparameters.get("model") or settings.default_hyperparameters.get("model") or settings.default_model


def record_value(key: str | None, model: str) -> str:
    """What the run record's `base_weights` says: the S3 key, or `scratch:<model yaml>`."""
    return key or f"{SCRATCH}{model}"


def describe(value: str | None) -> str:
    """Readable form of a record value, for notifications."""
    if not value:
        return "unknown"
    if value.startswith(SCRATCH):
        return f"{value[len(SCRATCH):]} from scratch"
    m = _VERSION_KEY.match(value)
    if m:
        return f"champion {m['run']} ({value})"
    return value


def channel(bucket: str, key: str) -> dict[str, Any]:
    """The `weights` input channel: S3Prefix on the single object's key (SageMaker copies it into
    /opt/ml/input/data/weights/<file name>)."""
    return {"ChannelName": "weights", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{key}", "S3DataDistributionType": "FullyReplicated"}}}


def file_name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def resolve_request(request: Any, settings: Any, *, store: Any, s3: Any) -> str | None:
    """A run request's base weights: its own `weights`, else its manifest's, else BaseWeights."""
    bucket = settings.artifacts_bucket
    spec = request.weights or manifest_weights(s3, bucket, request.dataset) or settings.base_weights
    return resolve(spec, dataset=request.dataset.name, bucket=bucket, store=store, s3=s3)
