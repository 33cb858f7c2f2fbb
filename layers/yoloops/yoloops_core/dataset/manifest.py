"""The completion marker `dataset push` writes last: every file with its size and sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from yoloops_core.dataset.validate import MANIFEST_NAME
from yoloops_core.models import iso, utcnow


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
            files.append({"path": rel, "size": full.stat().st_size, "sha256": _sha256(full)})
    files.sort(key=lambda f: f["path"])
    return {"dataset": dataset, "version": version, "created_at": iso(utcnow()), "files": files}
