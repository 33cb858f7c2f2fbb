"""Dataset contract and validator: one code path over local folders, S3 prefixes and zip archives.

Public API (the CLI, the ValidateDataset step and the local stack rely on it):
`validate_local_dataset`, `validate_s3_dataset`, `DatasetReport`, `build_manifest`, `MANIFEST_NAME`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from yoloops_core.dataset.layouts import DEFAULT_VAL_FRACTION, choose_val, split_key
from yoloops_core.dataset.manifest import build_manifest
from yoloops_core.dataset.report import AutoSplit, DatasetReport, Problem, SplitStats
from yoloops_core.dataset.sources import (
    DatasetNotFound,
    DatasetSource,
    FileEntry,
    LocalDirSource,
    S3PrefixSource,
    ZipSource,
)
from yoloops_core.dataset.validate import MANIFEST_NAME, img2label, validate_source
from yoloops_core.models import DatasetRef

# Label files read by the Lambda when each costs a GET: enough to catch a wrong class count or a wrong
# label format early, bounded so an unversioned sync of 10,000 images validates in ~listing time.
LABEL_SAMPLE = 50

__all__ = [
    "DEFAULT_VAL_FRACTION",
    "LABEL_SAMPLE",
    "MANIFEST_NAME",
    "AutoSplit",
    "DatasetNotFound",
    "DatasetReport",
    "DatasetSource",
    "FileEntry",
    "LocalDirSource",
    "Problem",
    "S3PrefixSource",
    "SplitStats",
    "ZipSource",
    "build_manifest",
    "choose_val",
    "img2label",
    "split_key",
    "validate_local_dataset",
    "validate_s3_dataset",
    "validate_source",
]


def validate_local_dataset(path: str | os.PathLike[str], *,
                           val_fraction: float = DEFAULT_VAL_FRACTION) -> DatasetReport:
    """Validate a local dataset folder (or a local .zip of one) before it is uploaded."""
    p = Path(path)
    if p.suffix.lower() == ".zip" and p.is_file():
        return validate_source(ZipSource.from_path(p), val_fraction=val_fraction)
    return validate_source(LocalDirSource(p), val_fraction=val_fraction)


def validate_s3_dataset(bucket: str, dataset: DatasetRef, s3_client: Any, *,
                        val_fraction: float = DEFAULT_VAL_FRACTION,
                        label_sample: int | None = LABEL_SAMPLE) -> DatasetReport:
    """Validate `datasets/<name>/<version>/` or `datasets/<name>/<version>.zip` without reading images.

    A prefix's structure is checked in full; of the label files that would each cost a GET (no manifest
    with inline texts), only `label_sample` are read here (None: all). The training job checks every label
    before its first epoch, so a broken label outside the sample still fails the run with its reason.
    A zip's labels cost a few ranged GETs in all, so they are always read in full.
    """
    if dataset.format == "zip":
        try:
            source: Any = ZipSource.from_s3(s3_client, bucket, dataset.key)
        except DatasetNotFound as exc:
            return validate_source(_Missing(f"s3://{bucket}/{dataset.key}", str(exc)))
        report = validate_source(source, val_fraction=val_fraction)
        report.objects = list(source.objects)
        return report
    # An unversioned dataset (datasets/<name>/...) is its own files, never its version folders or zips.
    include = unversioned_member if dataset.content_named else None
    prefix_source = S3PrefixSource(s3_client, bucket, dataset.key, prefetch_labels=label_sample is None,
                                   include=include)
    try:
        report = validate_source(prefix_source, val_fraction=val_fraction, label_sample=label_sample)
        report.objects = list(prefix_source.objects)
        return report
    finally:
        prefix_source.close()


# Second-level folders that are part of a dataset's layout, never a version name (the upload sessions too).
LAYOUT_DIRS = frozenset({"images", "labels", "train", "valid", "val", "validation", "test", "annotations"})


def unversioned_member(rel: str) -> bool:
    """Whether `rel` (relative to datasets/<name>/) is part of the unversioned dataset: top-level files
    (not `<version>.zip`) and layout folders; `<version>/...` belongs to that version."""
    first, _, rest = rel.partition("/")
    if not rest:
        return not first.lower().endswith(".zip")
    return first.lower() in LAYOUT_DIRS


class _Missing:
    """A source that does not exist: the report says so (a rejection, not a crash)."""

    def __init__(self, description: str, reason: str) -> None:
        self.description = description
        self._reason = reason

    def list_files(self) -> list[FileEntry]:
        raise DatasetNotFound(self._reason)

    def read_files(self, paths: Any) -> dict[str, bytes | Exception]:
        return {}

    def key_for(self, path: str) -> str:
        return path
