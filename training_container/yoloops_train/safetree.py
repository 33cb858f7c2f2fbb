"""Only the dataset YAML, images and label files reach Ultralytics.

Ultralytics loads `<labels dir>.cache` with `np.load(..., allow_pickle=True)` (ultralytics/data/utils.py,
load_dataset_cache_file), so a `labels/train.cache` in an upload would run its pickle inside the job, with
the job's role. The job therefore never hands Ultralytics the uploaded tree: `build` links every image of
every split, and the label file Ultralytics derives from it, into a fresh tree under scratch (same relative
paths), and rewrites the image lists to point there. Nothing else of the upload (`*.cache`, `*.npy`, `*.pt`,
`*.pth`, `*.pkl`, anything) is in that tree, and it is rebuilt from scratch by every job start, so the only
label caches in it are the ones Ultralytics writes during this job, or ones this job's earlier attempt wrote
into the checkpoint folder and recorded by sha256 (`save_caches` / `restore_caches`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

from .common import log
from .labelcheck import label_for

TREE = "dataset-tree"
CACHE_HASHES = "hashes.json"  # in the checkpoint's label_cache folder: {saved name: sha256}
UNSAFE_SUFFIXES = (".cache", ".npy", ".pt", ".pth", ".pkl", ".pickle")


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)  # same filesystem: no copy, and the tree does not depend on the channel's path
    except OSError:
        os.symlink(src.resolve(), dest)


def build(splits: dict[str, list[Path]], root: Path, work: Path) -> tuple[Path, dict[str, list[Path]]]:
    """(tree root, splits with image paths in the tree). Images keep their path relative to `root`; each image's
    label file (labelcheck.label_for, Ultralytics' rule) is linked to where Ultralytics will look for it."""
    tree = work / TREE
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    root = root.resolve()
    out: dict[str, list[Path]] = {}
    done: set[Path] = set()
    for split, images in splits.items():
        moved = []
        for image in images:
            rel = image.resolve().relative_to(root) if image.resolve().is_relative_to(root) else Path(image.name)
            dest = tree / rel
            if dest not in done:
                _link(image, dest)
                label = label_for(image)
                if label.is_file():
                    _link(label, label_for(dest))
                done.add(dest)
            moved.append(dest)
        out[split] = moved
    skipped = sorted({p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.is_file() and p.suffix.lower() in UNSAFE_SUFFIXES})
    if skipped:
        log(f"dataset: {len(skipped)} file(s) Ultralytics or torch would unpickle were left out of the training "
            f"tree, never loaded: {', '.join(skipped[:10])}")
    return tree, out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _saved_name(cache: Path) -> str:
    return str(cache).strip("/").replace("/", "__")


def save_caches(label_dirs: list[Path], store: Path) -> None:
    """Keep this job's label scans (seconds per 1k images) with the checkpoints, with their sha256, so a
    restarted job can reuse them and nothing else."""
    hashes = _read_hashes(store)
    for d in label_dirs:
        src = d.with_suffix(".cache")
        if src.exists():
            store.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                name = _saved_name(src)
                shutil.copy2(src, store / name)
                hashes[name] = _sha256(store / name)
    if hashes:
        with contextlib.suppress(OSError):
            tmp = store / (CACHE_HASHES + ".partial")
            tmp.write_text(json.dumps(hashes))
            os.replace(tmp, store / CACHE_HASHES)


def _read_hashes(store: Path) -> dict[str, str]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((store / CACHE_HASHES).read_text())
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    return {}


def restore_caches(label_dirs: list[Path], store: Path) -> list[str]:
    """Copy saved label caches back into the tree, only those whose sha256 is the one recorded when this
    job saved them; returns the names refused."""
    hashes, refused = _read_hashes(store), []
    for d in label_dirs:
        target = d.with_suffix(".cache")
        name = _saved_name(target)
        saved = store / name
        if not saved.exists() or target.exists():
            continue
        if hashes.get(name) != _sha256(saved):
            refused.append(name)
            continue
        with contextlib.suppress(OSError):
            shutil.copy2(saved, target)
    if refused:
        log(f"label caches not written by this job (no matching sha256 in {CACHE_HASHES}) were not loaded: "
            f"{', '.join(refused)}")
    return refused


def rewrite_lists(yaml_path: Path, splits: dict[str, list[Path]], tree: Path) -> None:
    """Point the normalized data.yaml (layouts.normalize: one absolute image list per split) at the tree."""
    import yaml

    data = yaml.safe_load(yaml_path.read_text())
    for split, images in splits.items():
        Path(data[split]).write_text("".join(f"{p}\n" for p in images))
    data["path"] = str(tree)
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
