"""A run trains exactly the objects it validated: the run's input snapshot.

ValidateDataset lists the dataset once (yoloops_core.dataset); right after, this module writes

    runs/<run id>/input/train.manifest           S3 ManifestFile: [{"prefix": "s3://<bucket>/<dir>/"}, "<rel>", ...]
    runs/<run id>/input/validated/listing.json   {"prefix", "files": [{"path", "size", "etag"}], ...}

The plan's `train` channel is that ManifestFile (S3DataType ManifestFile), so SageMaker downloads exactly
the validated keys: an unversioned dataset's version folders and `<v>.zip*` siblings are not in it. The
`validated` channel (S3Prefix runs/<run id>/input/validated/) brings listing.json to the job, which checks
its files against it before epoch 1 (training_container/yoloops_train/snapshot.py): key set, sizes, and
MD5 where the ETag is a single-part MD5. A difference fails the run: "dataset changed after validation".
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

MANIFEST_NAME = "train.manifest"
LISTING_CHANNEL = "validated"
LISTING_NAME = "listing.json"
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


class Snapshot(BaseModel):
    """Where the run's snapshot is (RunContext.snapshot): the plan builds the channels from it."""

    manifest_key: str  # runs/<run id>/input/train.manifest
    listing_prefix: str  # runs/<run id>/input/validated/
    files: int


def input_prefix(run_id: str) -> str:
    return f"runs/{run_id}/input/"


def _directory(objects: list[tuple[str, int, str]]) -> str:
    """The manifest's prefix: the folder every key is under (a zip's folder; a version's folder)."""
    keys = [k for k, _, _ in objects]
    common = keys[0].rsplit("/", 1)[0] + "/" if "/" in keys[0] else ""
    while any(not k.startswith(common) for k in keys):
        common = common[:-1].rsplit("/", 1)[0] + "/" if "/" in common[:-1] else ""
    return common


def plain_md5(etag: str) -> str | None:
    """A single-part, non-KMS upload's ETag is the MD5 of its bytes; a multipart one ("...-N") is not."""
    etag = etag.strip('"').lower()
    return etag if _PLAIN_MD5.match(etag) else None


def write_snapshot(s3: Any, bucket: str, run_id: str, objects: list[tuple[str, int, str]]) -> Snapshot:
    """Write the manifest and the validated listing of `objects` (key, size, ETag), as validated."""
    if not objects:
        raise ValueError(f"run {run_id}: validation listed no objects, so there is no snapshot to train on")
    objects = sorted(objects)
    prefix = _directory(objects)
    rel = [k[len(prefix):] for k, _, _ in objects]
    base = input_prefix(run_id)
    manifest = [{"prefix": f"s3://{bucket}/{prefix}"}, *rel]
    s3.put_object(Bucket=bucket, Key=base + MANIFEST_NAME, Body=json.dumps(manifest).encode(),
                  ContentType="application/json")
    listing = {"bucket": bucket, "prefix": prefix, "run_id": run_id,
               "files": [{"path": r, "size": size, "etag": etag.strip('"')}
                         for r, (_, size, etag) in zip(rel, objects, strict=True)]}
    s3.put_object(Bucket=bucket, Key=f"{base}{LISTING_CHANNEL}/{LISTING_NAME}",
                  Body=json.dumps(listing, separators=(",", ":")).encode(), ContentType="application/json")
    return Snapshot(manifest_key=base + MANIFEST_NAME, listing_prefix=f"{base}{LISTING_CHANNEL}/", files=len(rel))


def channels(bucket: str, snapshot: Snapshot) -> list[dict[str, Any]]:
    """`train` = exactly the validated objects (ManifestFile); `validated` = the listing the job checks."""
    return [
        {"ChannelName": "train",
         "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile",
                                         "S3Uri": f"s3://{bucket}/{snapshot.manifest_key}",
                                         "S3DataDistributionType": "FullyReplicated"}}},
        {"ChannelName": LISTING_CHANNEL,
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                         "S3Uri": f"s3://{bucket}/{snapshot.listing_prefix}",
                                         "S3DataDistributionType": "FullyReplicated"}}},
    ]
