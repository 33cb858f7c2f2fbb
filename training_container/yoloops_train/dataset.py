"""Find the dataset YAML in the train channel (a folder or one .zip) and point its paths at the channel."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import zipfile
from pathlib import Path

from .common import JobFailure

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".dng", ".mpo", ".pfm", ".heic"}


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


def _find_yaml(root: Path) -> tuple[Path, dict]:
    import yaml

    found = []
    for p in sorted(root.rglob("*.y*ml")):
        if any(part.startswith((".", "__MACOSX")) for part in p.relative_to(root).parts):
            continue
        try:
            data = yaml.safe_load(p.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and {"train", "val", "names"} <= set(data):
            # data.yaml first, then the shallowest
            found.append(((p.name != "data.yaml", len(p.relative_to(root).parts), str(p)), p, data))
    if not found:
        raise JobFailure(f"no dataset YAML with train/val/names keys found in the train channel ({root})")
    _, path, data = min(found, key=lambda t: t[0])
    return path, data


def _resolve_split(value: str, roots: list[Path], split: str) -> str:
    candidates = [Path(value)] if Path(value).is_absolute() else []
    rel = value
    for r in roots:
        candidates.append(r / value)
    while rel.startswith("../"):  # Roboflow writes ../train/images relative to the YAML's folder
        rel = rel[3:]
        candidates.extend(r / rel for r in roots)
    for c in candidates:
        if c.exists():
            return str(c.resolve())
    raise JobFailure(f"dataset split {split!r} path {value!r} not found in the dataset")


def _count_images(p: Path) -> int:
    if p.is_file() and p.suffix == ".txt":  # a list of image paths
        return sum(1 for line in p.read_text().splitlines() if line.strip())
    if p.is_file():
        return 1 if p.suffix.lower() in IMAGE_SUFFIXES else 0
    return sum(1 for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)


@dataclasses.dataclass
class PreparedDataset:
    yaml_path: Path
    root: Path
    names: list[str]
    n_train: int
    n_val: int
    bytes_train: int
    label_dirs: list[Path]


def prepare_dataset(channel: Path, work: Path) -> PreparedDataset:
    """Find the dataset YAML in the channel, point its paths at the channel, write the copy under work/."""
    import yaml

    if not channel.exists():
        raise JobFailure(f"train channel {channel} does not exist")
    root = channel
    entries = [p for p in channel.iterdir() if not p.name.startswith(".")] if channel.is_dir() else [channel]
    zips = [p for p in entries if p.is_file() and p.suffix.lower() == ".zip"]
    if len(entries) == 1 and zips:  # datasets/<name>/<version>.zip arrives as-is: extract it here
        root = work / "dataset"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _safe_extract(zips[0], root)
    yaml_path, data = _find_yaml(root)
    names = data["names"]
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise JobFailure(f"dataset YAML {yaml_path.name}: names must be a non-empty list or mapping")
    if "nc" in data and int(data["nc"]) != len(names):
        raise JobFailure(f"dataset YAML {yaml_path.name}: nc={data['nc']} but {len(names)} names")
    roots = [yaml_path.parent]
    declared = data.get("path")
    if declared:
        d = Path(str(declared))
        d = d if d.is_absolute() else yaml_path.parent / d
        if d.exists():
            roots.insert(0, d)
    out = {k: v for k, v in data.items() if k not in {"download", "path"}}  # never download anything
    counts = {}
    for split in ("train", "val", "test"):
        if not data.get(split):
            continue
        vals = data[split] if isinstance(data[split], list) else [data[split]]
        resolved = [_resolve_split(str(v), roots, split) for v in vals]
        counts[split] = sum(_count_images(Path(r)) for r in resolved)
        if split in {"train", "val"} and counts[split] == 0:
            raise JobFailure(f"dataset split {split!r} ({vals}) has no images")
        out[split] = resolved if isinstance(data[split], list) else resolved[0]
    out["path"] = str(yaml_path.parent.resolve())
    out["names"] = dict(enumerate(names))
    out["nc"] = len(names)
    work.mkdir(parents=True, exist_ok=True)
    dest = work / "data.yaml"
    dest.write_text(yaml.safe_dump(out, sort_keys=False))
    train_dirs = [Path(p) for p in (out["train"] if isinstance(out["train"], list) else [out["train"]])]
    size = sum(f.stat().st_size for d in train_dirs if d.is_dir() for f in d.rglob("*")
               if f.suffix.lower() in IMAGE_SUFFIXES)
    label_dirs = []
    for split in ("train", "val"):
        for p in out[split] if isinstance(out[split], list) else [out[split]]:
            s = str(p)
            if "/images" in s:  # Ultralytics maps .../images/... -> .../labels/... for label files
                label_dirs.append(Path("/labels".join(s.rsplit("/images", 1))))
    return PreparedDataset(dest, yaml_path.parent, names, counts.get("train", 0), counts.get("val", 0),
                           size, label_dirs)


def restore_label_caches(ds: PreparedDataset, store: Path) -> None:
    for d in ds.label_dirs:
        saved = store / (str(d.with_suffix(".cache")).strip("/").replace("/", "__"))
        target = d.with_suffix(".cache")
        if saved.exists() and not target.exists():
            with contextlib.suppress(OSError):
                shutil.copy2(saved, target)


def save_label_caches(ds: PreparedDataset, store: Path) -> None:
    """Label scans cost seconds per 1k images: keep them with the checkpoints so a restarted job skips them."""
    for d in ds.label_dirs:
        src = d.with_suffix(".cache")
        if src.exists():
            store.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy2(src, store / (str(src).strip("/").replace("/", "__")))
