"""The train channel (a folder or one .zip) -> a normalized data.yaml (layouts.py), labels checked."""

from __future__ import annotations

import dataclasses
import shutil
import zipfile
from pathlib import Path

from .common import JobFailure, log
from .labelcheck import check_labels, label_for
from .layouts import DEFAULT_VAL_FRACTION, normalize
from .safetree import build as build_tree
from .safetree import restore_caches, rewrite_lists, save_caches
from .storage import MARGIN_BYTES, require_free, zip_extracted_bytes


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a zip, refusing members that would land outside dest (zip-slip)."""
    dest = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                target = (dest / member.filename).resolve()
                if not target.is_relative_to(dest):
                    raise JobFailure(f"dataset zip {archive.name} has an unsafe member path {member.filename!r}")
            zf.extractall(dest)
    except zipfile.BadZipFile as e:
        raise JobFailure(f"dataset zip {archive.name} is not a valid zip: {e}") from None


@dataclasses.dataclass
class PreparedDataset:
    yaml_path: Path
    root: Path
    names: list[str]
    n_train: int
    n_val: int
    bytes_train: int
    label_dirs: list[Path]
    # what Ultralytics reads: images + labels linked from `root` (safetree.build), never the upload itself
    tree: Path | None = None


def prepare_dataset(channel: Path, work: Path, val_fraction: float = DEFAULT_VAL_FRACTION) -> PreparedDataset:
    """Find the dataset in the channel (any supported layout, layouts.py), write the normalized data.yaml
    under work/, and check every label before training starts."""
    if not channel.exists():
        raise JobFailure(f"train channel {channel} does not exist")
    root = channel
    entries = [p for p in channel.iterdir() if not p.name.startswith(".")] if channel.is_dir() else [channel]
    zips = [p for p in entries if p.is_file() and p.suffix.lower() == ".zip"]
    if len(entries) == 1 and zips:  # datasets/<name>/<version>.zip arrives as-is: extract it here
        root = work / "dataset"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        require_free(root, zip_extracted_bytes(zips[0]) + MARGIN_BYTES, f"extracting {zips[0].name}")
        _safe_extract(zips[0], root)
    norm = normalize(root, work, val_fraction)
    checked = check_labels(norm.splits, len(norm.names), root)
    log(f"dataset layout {norm.layout}"
        + (f"; no val split, so {len(norm.splits['val'])} images were split off by file-name hash "
           f"(val_fraction {val_fraction:g})" if norm.auto_split else "")
        + f"; {checked} label files checked")
    size = sum(p.stat().st_size for p in norm.splits["train"])
    tree, splits = build_tree(norm.splits, root, work)
    rewrite_lists(norm.yaml_path, splits, tree)
    # Ultralytics caches a split's label scan beside the folder of its first label (images sorted by path).
    label_dirs = list(dict.fromkeys(label_for(min(splits[s], key=str)).parent for s in ("train", "val")))
    return PreparedDataset(norm.yaml_path, norm.root, norm.names, len(norm.splits["train"]),
                           len(norm.splits["val"]), size, label_dirs, tree)


def restore_label_caches(ds: PreparedDataset, store: Path) -> None:
    """A restarted job reuses the label scans its earlier attempt saved, only those (safetree: sha256-checked)."""
    restore_caches(ds.label_dirs, store)


def save_label_caches(ds: PreparedDataset, store: Path) -> None:
    """Label scans cost seconds per 1k images: keep them with the checkpoints so a restarted job skips them."""
    save_caches(ds.label_dirs, store)
