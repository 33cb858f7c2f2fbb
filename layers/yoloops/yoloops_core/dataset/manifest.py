"""The completion marker `dataset push` writes last: every file with its size, sha256 and md5, and the
content of the small text files the validator reads (labels, image lists, the YAML).

Why the inline texts: validating an S3 prefix otherwise costs one GET per label file (tens of thousands).
The validator uses an inline text only when the listing proves the object in S3 holds exactly those
bytes (sources.S3PrefixSource); md5 is what makes that provable, since a single-part upload's ETag is
the MD5 of its content.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

from yoloops_core.models import iso, utcnow

MANIFEST_NAME = "manifest.json"
# Text files small enough to carry in the manifest; bigger ones are read from S3 as before.
INLINE_SUFFIXES = (".txt", ".yaml", ".yml")
MAX_INLINE_BYTES = 64 * 1024


def md5_hex(data: bytes) -> str:
    # Not a security boundary on its own (see S3PrefixSource): a content checksum that S3 reports back.
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def wants_inline(path: str, size: int) -> bool:
    return path.lower().endswith(INLINE_SUFFIXES) and 0 <= size <= MAX_INLINE_BYTES


def manifest_entry(path: str, data: bytes) -> dict[str, Any]:
    """One `files[]` item for a file's bytes (build_manifest's rule; the benchmark reuses it)."""
    entry: dict[str, Any] = {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                             "md5": md5_hex(data)}
    if wants_inline(path, len(data)):
        with contextlib.suppress(UnicodeDecodeError):  # not text: read from S3 and reported there
            entry["text"] = data.decode("utf-8")
    return entry


def _streamed_entry(path: str, full: Path) -> dict[str, Any]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with full.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return {"path": path, "size": size, "sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def build_manifest(local_dir: str | os.PathLike[str], dataset: str, version: str) -> dict[str, Any]:
    """The manifest for a local dataset folder (format: docs/architecture.md). Paths are relative,
    "/"-separated and sorted; an existing manifest.json is not listed in itself."""
    root = Path(local_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    files = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel == MANIFEST_NAME:
                continue
            if wants_inline(rel, full.stat().st_size):
                files.append(manifest_entry(rel, full.read_bytes()))
            else:
                files.append(_streamed_entry(rel, full))  # images: hashed in chunks, never held whole
    files.sort(key=lambda f: f["path"])
    return {"dataset": dataset, "version": version, "created_at": iso(utcnow()), "files": files}
