"""Any layout people export -> one normalized Ultralytics data.yaml with absolute image-list files.

Stdlib + PyYAML only (the image does not ship yoloops_core). The rules mirror the validator's
(layers/yoloops/yoloops_core/dataset/discover.py, validate.py, layouts.py), so what the Lambda accepted
the job trains on, split the same way:
- a YAML: the shallowest `*.yaml`/`*.yml` with train or val and names or nc (data.yaml first at a depth);
  splits are folders (Ultralytics `images/train`, Roboflow `../train/images`) or image lists (CVAT's
  `path: ./` + `train: train.txt`, lines relative to the dataset root or `./` to the list's folder);
- no YAML: Label Studio's export, the shallowest classes.txt with images/ (and labels/) beside it;
- no val split: the train images whose sha256(stem) falls below `val_fraction` go to val (choose_val, a
  copy of yoloops_core.dataset.layouts.choose_val; tests/container/test_normalize_layouts.py checks they agree).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path

from .common import JobFailure

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".dng", ".mpo", ".pfm", ".heic"}
DEFAULT_VAL_FRACTION = 0.15
SPLITS = ("train", "val", "test")


def split_key(path: str) -> float:
    """Where an image falls in [0, 1): sha256 of its file stem (same rule as the validator's)."""
    stem = path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return int.from_bytes(hashlib.sha256(stem.encode("utf-8")).digest()[:8], "big") / 2.0**64


def choose_val(paths: Iterable[str], fraction: float) -> set[str]:
    """The images that go to val; at least one when there are two or more, and train always keeps one."""
    ordered = sorted(set(paths), key=lambda p: (split_key(p), p))
    val = {p for p in ordered if split_key(p) < fraction}
    if len(ordered) >= 2 and not val and fraction > 0:
        val = {ordered[0]}
    if ordered:
        val.discard(ordered[-1])
    return val


@dataclasses.dataclass
class Normalized:
    yaml_path: Path  # the written data.yaml (absolute paths only)
    root: Path  # the dataset root the splits were resolved against
    layout: str  # ultralytics | roboflow | cvat | label_studio | yaml
    names: list[str]
    splits: dict[str, list[Path]]  # absolute image paths per split, as written to <work>/<split>.txt
    auto_split: bool  # val was split off train here


def _skip(p: Path, root: Path) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in p.relative_to(root).parts)


def _find_yaml(root: Path) -> tuple[Path, dict] | None:
    import yaml

    candidates = sorted((p for p in root.rglob("*") if p.suffix.lower() in (".yaml", ".yml") and p.is_file()
                         and not _skip(p, root)),
                        key=lambda p: (len(p.relative_to(root).parts), p.name.lower() != "data.yaml",
                                       p.relative_to(root).as_posix()))
    for p in candidates[:20]:
        try:
            cfg = yaml.safe_load(p.read_bytes())
        except (yaml.YAMLError, OSError):
            continue
        if isinstance(cfg, dict) and ("train" in cfg or "val" in cfg) and ("names" in cfg or "nc" in cfg):
            return p, cfg
    return None


def _label_studio(root: Path) -> tuple[Path, dict] | None:
    found = sorted((p for p in root.rglob("*") if p.name.lower() == "classes.txt" and p.is_file()
                    and not _skip(p, root)), key=lambda p: (len(p.relative_to(root).parts), p.as_posix()))
    if not found:
        return None
    path = found[0]
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise JobFailure(f"dataset {path.name} cannot be read as UTF-8 text: {e}") from None
    images = path.parent / "images"
    if not images.is_dir():
        raise JobFailure(f"unsupported dataset layout: {path.relative_to(root)} but no images/ folder next to "
                         "it (Label Studio's YOLO export has images/, labels/ and classes.txt)")
    cfg: dict = {"names": names}
    subdirs = {s: f"images/{s}" for s in SPLITS if (images / s).is_dir()}
    cfg.update(subdirs if "train" in subdirs else {"train": "images"})
    return path, cfg


def _names(cfg: dict, where: str) -> list[str]:
    raw, nc = cfg.get("names"), cfg.get("nc")
    if raw is None and isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
        return [f"class{i}" for i in range(nc)]
    if isinstance(raw, dict):
        try:
            ids = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            raise JobFailure(f"dataset {where}: names keys must be class ids 0..n-1") from None
        if ids != list(range(len(ids))):
            raise JobFailure(f"dataset {where}: names ids must be 0..{len(ids) - 1} without gaps, got {ids[:10]}")
        raw = [raw.get(i, raw.get(str(i))) for i in ids]
    if not isinstance(raw, list) or not raw:
        raise JobFailure(f"dataset {where}: names must be a non-empty list or mapping")
    if nc is not None and nc != len(raw):
        raise JobFailure(f"dataset {where}: nc={nc} but {len(raw)} names")
    return [str(n) for n in raw]


def _root(cfg: dict, base: Path, top: Path) -> Path:
    declared = cfg.get("path")
    if isinstance(declared, str) and declared:
        d = Path(declared) if Path(declared).is_absolute() else base / declared
        # an exporter's own absolute path (or ../datasets/x) means nothing here unless it exists in the channel
        if d.is_dir() and d.resolve().is_relative_to(top.resolve()):
            return d.resolve()
    return base.resolve()


def _locate(ref: str, bases: list[Path], top: Path) -> Path | None:
    ref = ref.strip().replace("\\", "/")
    tries: list[Path] = []
    if ref.startswith("/"):
        parts = ref.strip("/").split("/")
        tries += [Path(ref)] + [bases[0].joinpath(*parts[i:]) for i in range(len(parts))]
    else:
        tries += [b / ref for b in bases]
        stripped = ref
        while stripped.startswith("../"):  # Roboflow writes ../train/images relative to the YAML's folder
            stripped = stripped[3:]
            tries.append(bases[0] / stripped)
    for t in tries:
        t = t.resolve()
        if t.exists() and t.is_relative_to(top.resolve()):
            return t
    return None


def _read_list(path: Path, root: Path, top: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise JobFailure(f"dataset image list {path.name} cannot be read: {e}") from None
    images, missing = [], []
    for n, line in enumerate(lines, 1):
        ref = line.strip()
        if not ref:
            continue
        bases = [path.parent] if ref.startswith("./") else [root, path.parent]
        found = _locate(ref, bases, top)
        if found is None or not found.is_file():
            missing.append(f"line {n}: {ref}")
        elif found.suffix.lower() in IMAGE_SUFFIXES:
            images.append(found)
    if missing:
        raise JobFailure(f"dataset image list {path.name}: {len(missing)} images are not in the dataset "
                         f"(first: {'; '.join(missing[:5])})")
    return images


def _split_images(name: str, value: object, root: Path, top: Path, missing_ok: bool = False) -> list[Path] | None:
    """The split's images; None when none of its paths exists and that is allowed (missing_ok)."""
    images: list[Path] = []
    missing = 0
    refs = value if isinstance(value, list) else [value]
    for ref in refs:
        if not isinstance(ref, str):
            raise JobFailure(f"dataset split {name!r} must be a path or a list of paths, got {ref!r}")
        found = _locate(ref, [root], top)
        if found is None and missing_ok:
            missing += 1
            continue
        if found is None:
            raise JobFailure(f"dataset split {name!r} path {ref!r} not found in the dataset")
        if found.is_file():
            images += _read_list(found, root, top)
        else:
            images += sorted(p for p in found.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return None if missing == len(refs) else images


def detect_layout(cfg: dict, yaml_path: Path) -> str:
    refs = [v for s in SPLITS for v in (cfg.get(s) if isinstance(cfg.get(s), list) else [cfg.get(s)])
            if isinstance(v, str)]
    if any(r.strip().lower().endswith(".txt") for r in refs):
        return "cvat"
    if any(r.strip().startswith("../") for r in refs) or (yaml_path.parent / "train" / "images").is_dir():
        return "roboflow"
    if any("images" in r for r in refs):
        return "ultralytics"
    return "yaml"


def normalize(root: Path, work: Path, val_fraction: float = DEFAULT_VAL_FRACTION) -> Normalized:
    """Find the dataset in `root` (any supported layout), write <work>/data.yaml + <work>/<split>.txt."""
    import yaml

    found = _find_yaml(root)
    layout = None
    if found is None:
        found = _label_studio(root)
        layout = "label_studio"
    if found is None:
        raise JobFailure(f"unsupported dataset layout: no dataset YAML with train/val/names keys and no "
                         f"classes.txt (Label Studio) found in the train channel ({root})")
    cfg_path, cfg = found
    where = cfg_path.relative_to(root).as_posix()
    layout = layout or detect_layout(cfg, cfg_path)
    names = _names(cfg, where)
    data_root = _root(cfg, cfg_path.parent, root)
    splits: dict[str, list[Path]] = {}
    for split in SPLITS:
        if cfg.get(split) in (None, "", []):
            continue
        # the validator's rule: a Roboflow export may name a test (or, all train, a valid) folder it lacks
        missing_ok = split == "test" or (split == "val" and layout == "roboflow" and val_fraction > 0)
        images = _split_images(split, cfg[split], data_root, root, missing_ok)
        if images is not None:
            splits[split] = images
    auto = "val" not in splits and val_fraction > 0
    if auto and splits.get("train"):
        by_rel = {p.relative_to(root).as_posix(): p for p in splits["train"]}
        picked = choose_val(by_rel, val_fraction)
        splits["val"] = [p for r, p in by_rel.items() if r in picked]
        splits["train"] = [p for r, p in by_rel.items() if r not in picked]
    for split in ("train", "val"):
        if not splits.get(split):
            raise JobFailure(f"dataset split {split!r} has no images ({where}, {layout} layout)")

    work.mkdir(parents=True, exist_ok=True)
    out = {k: v for k, v in cfg.items() if k not in {"download", "path", *SPLITS, "names", "nc"}}
    out["path"] = str(data_root)
    for split, images in splits.items():
        lst = work / f"{split}.txt"
        lst.write_text("".join(f"{p}\n" for p in images))
        out[split] = str(lst)
    out["names"] = dict(enumerate(names))
    out["nc"] = len(names)
    dest = work / "data.yaml"
    dest.write_text(yaml.safe_dump(out, sort_keys=False))
    return Normalized(dest, data_root, layout, names, splits, auto)
