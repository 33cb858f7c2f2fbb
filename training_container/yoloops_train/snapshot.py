"""Before epoch 1: are the files this job got exactly the ones ValidateDataset validated?

The `train` channel is a ManifestFile of the validated keys; the `validated` channel holds listing.json
(yoloops_core.snapshot): every file's path, size and ETag as validation listed them. An object rewritten,
added or deleted between validation and this download shows here as a different key set, size, or MD5
(checked where the ETag is a single-part upload's MD5; a multipart ETag is not one). Any difference
fails the job with "dataset changed after validation" and what changed; the run then fails, never trains
on data nobody validated. No listing (a local run, a run planned before snapshots): nothing to check.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import JobFailure, log

LISTING_NAME = "listing.json"
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
SHOWN = 5  # differences named in the failure line


class DatasetChanged(JobFailure):
    """The channel's files differ from the validated listing."""


def listing_path(base: Path, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    channel = env.get("SM_CHANNEL_VALIDATED") or str(base / "input" / "data" / "validated")
    return Path(channel) / LISTING_NAME


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def differences(train: Path, listing: dict) -> list[str]:
    """What differs between the files under `train` and the listing (empty: identical)."""
    expected = {f["path"]: f for f in listing.get("files") or []}
    found = {p.relative_to(train).as_posix(): p for p in train.rglob("*") if p.is_file()}
    problems = [f"{rel}: missing" for rel in sorted(expected.keys() - found.keys())]
    problems += [f"{rel}: not validated" for rel in sorted(found.keys() - expected.keys())]
    to_hash = []
    for rel in sorted(expected.keys() & found.keys()):
        size = found[rel].stat().st_size
        if size != int(expected[rel]["size"]):
            problems.append(f"{rel}: {size} bytes, validated {expected[rel]['size']}")
        elif _PLAIN_MD5.match(str(expected[rel].get("etag") or "").strip('"').lower()):
            to_hash.append(rel)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:  # hashlib frees the GIL
        for rel, md5 in zip(to_hash, pool.map(lambda r: _md5(found[r]), to_hash), strict=True):
            if md5 != str(expected[rel]["etag"]).strip('"').lower():
                problems.append(f"{rel}: content differs (md5 {md5}, validated {expected[rel]['etag']})")
    return problems


def verify_snapshot(train: Path, base: Path, env: dict[str, str] | None = None) -> int | None:
    """Raise DatasetChanged unless `train` holds exactly the validated files; the number checked, or None
    when the job has no validated listing."""
    path = listing_path(base, env)
    if not path.is_file():
        log(f"no validated listing at {path}: the dataset is not checked against validation")
        return None
    listing = json.loads(path.read_text())
    problems = differences(train, listing)
    if problems:
        more = f" (+{len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise DatasetChanged(f"dataset changed after validation: {len(problems)} difference(s) from "
                             f"s3://{listing.get('bucket', '?')}/{listing.get('prefix', '')}: "
                             + "; ".join(problems[:SHOWN]) + more)
    log(f"dataset matches its validated listing: {len(listing.get('files') or [])} files")
    return len(listing.get("files") or [])
