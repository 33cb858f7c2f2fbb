"""YOLO dataset rules, applied identically to every DatasetSource (local dir, S3 prefix, zip)."""

from __future__ import annotations

import json
import math
import posixpath
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

from yoloops_core.dataset.manifest import MANIFEST_NAME
from yoloops_core.dataset.report import DatasetReport, ProblemCollector, SplitStats
from yoloops_core.dataset.sources import DatasetNotFound, DatasetSource, FileEntry

# Ultralytics' IMG_FORMATS.
IMAGE_SUFFIXES = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"})
SPLITS = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "val")
MOSTLY_BACKGROUND = 0.5  # warn when more than half of a split has no labels
# Files a dataset folder commonly carries that are neither images nor labels: not worth a warning.
IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "readme", "readme.md", "readme.txt", "readme.roboflow.txt",
                           "license", "license.txt", "classes.txt", "labels.cache"})


def img2label(path: str) -> str:
    """Ultralytics' rule: the last `/images/` becomes `/labels/`, the suffix becomes `.txt`."""
    p = "/" + path
    if "/images/" in p:
        head, tail = p.rsplit("/images/", 1)
        p = f"{head}/labels/{tail}"
    return p[1:].rsplit(".", 1)[0] + ".txt"


def _suffix(path: str) -> str:
    name = posixpath.basename(path)
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def _stem(path: str) -> str:
    return posixpath.basename(path).rsplit(".", 1)[0]


@dataclass
class _Split:
    name: str
    images: list[str] = field(default_factory=list)
    stats: SplitStats = field(default_factory=SplitStats)
    found: bool = True  # False when a path it names does not exist (already an error)


class _Index:
    """The listing, with directory lookups (a flat key list has no real directories)."""

    def __init__(self, entries: list[FileEntry]) -> None:
        self.size = {e.path: e.size for e in entries}
        self.dirs: set[str] = {""}
        for path in self.size:
            d = posixpath.dirname(path)
            while d and d not in self.dirs:
                self.dirs.add(d)
                d = posixpath.dirname(d)

    def under(self, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/" if directory else ""
        return sorted(p for p in self.size if p.startswith(prefix))


def validate_source(source: DatasetSource) -> DatasetReport:
    """Validate one dataset. Problems in the data end up in the report; only infrastructure errors raise."""
    problems = ProblemCollector()
    report = DatasetReport(source=source.description, valid=False)
    try:
        entries = source.list_files()
    except DatasetNotFound as exc:
        problems.error("dataset_not_found", str(exc))
        return _finish(report, problems)
    except zipfile.BadZipFile as exc:
        problems.error("zip_invalid", f"not a readable zip archive: {exc}")
        return _finish(report, problems)
    index = _Index(entries)
    report.files = len(entries)
    report.bytes = sum(max(e.size, 0) for e in entries)
    key = source.key_for

    data = _find_yaml(source, index, problems)
    if data is None:
        return _finish(report, problems)
    yaml_path, cfg = data
    report.yaml = yaml_path
    names = _names(cfg, problems, key(yaml_path))
    report.names = names
    report.nc = len(names) if names else None
    root = _root(cfg, yaml_path, index)

    splits: list[_Split] = []
    for split in SPLITS:
        value = cfg.get(split)
        if value in (None, "", []):
            if split in REQUIRED_SPLITS:
                problems.error("split_missing", f"the YAML has no '{split}' entry", key(yaml_path))
            continue
        splits.append(_resolve_split(split, value, root, index, source, problems, key(yaml_path)))

    _check_images_and_labels(splits, index, source, names, problems, report)
    _check_manifest(index, source, problems)
    report.splits = {s.name: s.stats for s in splits}
    for s in splits:
        if s.stats.images == 0:
            if not s.found:
                continue  # already reported as split_not_found
            if s.name in REQUIRED_SPLITS:
                problems.error("empty_split", f"split '{s.name}' has no images", key(yaml_path))
            else:
                problems.warning("empty_split", f"split '{s.name}' has no images", key(yaml_path))
        elif s.stats.backgrounds / s.stats.images > MOSTLY_BACKGROUND:
            problems.warning(
                "mostly_background",
                f"split '{s.name}': {s.stats.backgrounds} of {s.stats.images} images have no labels",
            )
    return _finish(report, problems)


def _finish(report: DatasetReport, problems: ProblemCollector) -> DatasetReport:
    report.errors = problems.errors
    report.warnings = problems.warnings
    report.error_count = problems.error_count
    report.warning_count = problems.warning_count
    report.problem_counts = dict(sorted(problems.counts.items()))
    report.valid = problems.error_count == 0
    return report


# ---------------------------------------------------------------- YAML

def _find_yaml(source: DatasetSource, index: _Index, problems: ProblemCollector) -> tuple[str, dict] | None:
    candidates = sorted(
        (p for p in index.size if _suffix(p) in ("yaml", "yml")),
        key=lambda p: (p.count("/"), posixpath.basename(p).lower() != "data.yaml", p),
    )
    if not candidates:
        problems.error("yaml_missing", "no dataset YAML (data.yaml or *.yaml with train/val/names) found")
        return None
    contents = source.read_files(candidates[:20])
    first_problem: tuple[str, str, str] | None = None
    for path in candidates[:20]:
        raw = contents.get(path)
        if isinstance(raw, Exception) or raw is None:
            first_problem = first_problem or ("unreadable", f"cannot read YAML: {raw}", path)
            continue
        if not raw.strip():
            first_problem = first_problem or ("empty_file", "the YAML file is empty", path)
            continue
        try:
            cfg = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            first_problem = first_problem or ("yaml_invalid", f"YAML does not parse: {exc}".splitlines()[0], path)
            continue
        if isinstance(cfg, dict) and ("train" in cfg or "val" in cfg) and ("names" in cfg or "nc" in cfg):
            return path, cfg
        first_problem = first_problem or ("yaml_invalid", "YAML has no train/val and names/nc entries", path)
    code, message, path = first_problem or ("yaml_missing", "no dataset YAML found", "")
    problems.error(code, message, source.key_for(path) if path else None)
    return None


def _names(cfg: dict, problems: ProblemCollector, key: str) -> list[str]:
    raw, nc = cfg.get("names"), cfg.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        problems.error("names_invalid", f"nc must be a positive integer, got {nc!r}", key)
        nc = None
    if raw is None:
        if nc is None:
            problems.error("names_missing", "the YAML has neither 'names' nor 'nc'", key)
            return []
        problems.warning("names_missing", f"no 'names': classes are called class0..class{nc - 1}", key)
        return [f"class{i}" for i in range(nc)]
    if isinstance(raw, list):
        names = [str(n) for n in raw]
    elif isinstance(raw, dict):
        try:
            ids = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            problems.error("names_invalid", "names keys must be class ids 0..n-1", key)
            return []
        if ids != list(range(len(ids))):
            problems.error("names_invalid", f"names ids must be 0..{len(ids) - 1} without gaps, got {ids[:10]}", key)
            return []
        names = [str(raw.get(i, raw.get(str(i)))) for i in ids]
    else:
        problems.error("names_invalid", f"names must be a list or a mapping, got {type(raw).__name__}", key)
        return []
    if not names:
        problems.error("names_invalid", "names is empty", key)
    if nc is not None and nc != len(names):
        problems.error("nc_mismatch", f"nc is {nc} but names has {len(names)} entries", key)
    if len(set(names)) != len(names):
        problems.warning("names_duplicate", "names contains duplicates", key)
    return names


def _root(cfg: dict, yaml_path: str, index: _Index) -> str:
    base = posixpath.dirname(yaml_path)
    path = cfg.get("path")
    # `path` written on the exporter's machine (absolute, or relative to its datasets dir) means nothing
    # here; use it only when it names a directory of this dataset.
    if isinstance(path, str) and path and not path.startswith("/"):
        candidate = posixpath.normpath(posixpath.join(base, path))
        if candidate == ".":
            return ""
        if not candidate.startswith("..") and candidate in index.dirs:
            return candidate
    return base


def _locate(ref: str, root: str, index: _Index, *, also: str | None = None) -> str | None:
    """Resolve a YAML/list path to a file or directory of the listing, Ultralytics-style: relative to the
    dataset root; Roboflow's `../train/images` also tried without the leading `../`; absolute paths
    by their longest suffix that exists here."""
    ref = ref.strip().replace("\\", "/")
    tries = []
    if ref.startswith("/"):
        parts = ref.strip("/").split("/")
        tries += [posixpath.join(root, *parts[i:]) for i in range(len(parts))]
    else:
        for base in (root, also) if also is not None else (root,):
            tries.append(posixpath.normpath(posixpath.join(base, ref)))
        stripped = ref
        while stripped.startswith("../"):
            stripped = stripped[3:]
            tries.append(posixpath.normpath(posixpath.join(root, stripped)))
    for t in tries:
        t = "" if t == "." else t
        if not t.startswith("..") and (t in index.size or t in index.dirs):
            return t
    return None


def _resolve_split(name: str, value: Any, root: str, index: _Index, source: DatasetSource,
                   problems: ProblemCollector, yaml_key: str) -> _Split:
    split = _Split(name)
    refs = value if isinstance(value, list) else [value]
    for ref in refs:
        if not isinstance(ref, str):
            problems.error("split_invalid", f"'{name}' must be a path or a list of paths, got {ref!r}", yaml_key)
            continue
        found = _locate(ref, root, index)
        if found is None:
            problems.error("split_not_found", f"'{name}: {ref}' does not exist in the dataset", yaml_key)
            split.found = False
        elif found in index.size:
            split.images += _read_image_list(found, root, index, source, problems)
        else:
            for path in index.under(found):
                suffix = _suffix(path)
                if suffix in IMAGE_SUFFIXES:
                    split.images.append(path)
                elif suffix != "txt" and posixpath.basename(path).lower() not in IGNORED_NAMES:
                    # .txt next to images are labels (no /images/ dir) and are checked with them.
                    problems.warning("unknown_extension", f"not an image format YOLO reads (.{suffix})",
                                     source.key_for(path))
    return split


def _read_image_list(path: str, root: str, index: _Index, source: DatasetSource,
                     problems: ProblemCollector) -> list[str]:
    raw = source.read_files([path])[path]
    if isinstance(raw, Exception):
        problems.error("unreadable", f"cannot read image list: {raw}", source.key_for(path))
        return []
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        problems.error("unreadable", "image list is not UTF-8 text", source.key_for(path))
        return []
    images = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        ref = line.strip()
        # Ultralytics: "./x" is relative to the list file's folder; otherwise try the dataset root first.
        if ref.startswith("./"):
            found = _locate(ref, posixpath.dirname(path), index)
        else:
            found = _locate(ref, root, index, also=posixpath.dirname(path))
        if found is None or found not in index.size:
            problems.error("image_missing", f"line {n}: image '{ref}' is not in the dataset", source.key_for(path))
        elif _suffix(found) not in IMAGE_SUFFIXES:
            problems.warning("unknown_extension", f"line {n}: '{ref}' is not an image format YOLO reads",
                             source.key_for(path))
        else:
            images.append(found)
    return images


# ---------------------------------------------------------------- images and labels

def _check_images_and_labels(splits: list[_Split], index: _Index, source: DatasetSource, names: list[str],
                             problems: ProblemCollector, report: DatasetReport) -> None:
    key = source.key_for
    nc = len(names)
    wanted: dict[str, list[tuple[_Split, str]]] = {}
    for split in splits:
        owner: dict[str, str] = {}  # label path -> first image
        for image in split.images:
            label = img2label(image)
            if label in owner:
                problems.error("duplicate_stem", f"'{image}' and '{owner[label]}' share the stem "
                               f"'{_stem(image)}' (and so one label file)", key(image))
                continue
            owner[label] = image
            size = index.size.get(image, 0)
            if size == 0:
                problems.error("empty_file", "zero-byte image", key(image))
            elif size < 0:
                problems.error("unreadable", "image cannot be read", key(image))
            split.stats.images += 1
            if label in index.size:
                wanted.setdefault(label, []).append((split, image))
            else:
                split.stats.backgrounds += 1
        # Label files in the split's label folders that belong to no image.
        label_dirs = {posixpath.dirname(lbl) for lbl in owner}
        image_dirs = {posixpath.dirname(img) for img in owner.values()}
        for d in label_dirs - image_dirs:
            for path in index.under(d):
                if posixpath.dirname(path) != d or path in owner:
                    continue
                if _suffix(path) != "txt":
                    if posixpath.basename(path).lower() not in IGNORED_NAMES:
                        problems.warning("unknown_extension", f"unexpected file in a label folder (.{_suffix(path)})",
                                         key(path))
                else:
                    problems.warning("orphan_label", "label file without a matching image", key(path))

    contents = source.read_files(list(wanted))
    counts: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    for label, users in wanted.items():
        raw = contents.get(label)
        rows = _parse_label(label, raw, nc, problems, key(label), kinds)
        for split, _image in users:
            if rows:
                split.stats.labels += 1
                split.stats.instances += len(rows)
                counts.update(rows)
            else:
                split.stats.backgrounds += 1
    report.class_instances = {names[c]: counts[c] for c in sorted(counts)}
    if kinds["polygon"] and kinds["box"]:
        problems.warning("mixed_label_types", f"{kinds['box']} box rows and {kinds['polygon']} polygon rows; "
                         "Ultralytics trains segmentation on the polygons only")
    report.task = "segment" if kinds["polygon"] else "detect"


def _parse_label(path: str, raw: bytes | Exception | None, nc: int, problems: ProblemCollector, key: str,
                 kinds: Counter[str]) -> list[int]:
    """Class ids of the label's valid rows; every bad row is one problem."""
    if raw is None or isinstance(raw, Exception):
        problems.error("unreadable", f"cannot read label file: {raw}", key)
        return []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.error("unreadable", "label file is not UTF-8 text", key)
        return []
    rows: list[int] = []
    seen: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 5:
            kind = "box"
        elif len(parts) >= 7 and (len(parts) - 1) % 2 == 0:
            kind = "polygon"
        else:
            problems.error("label_format", f"line {n}: {len(parts)} values; expected 5 (class x y w h) or a class "
                           "and an even number (>= 6) of polygon coordinates", key)
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            problems.error("label_format", f"line {n}: non-numeric value in {line.strip()[:60]!r}", key)
            continue
        cls, coords = values[0], values[1:]
        if not cls.is_integer() or not (0 <= cls < nc):
            problems.error("class_out_of_range", f"line {n}: class id {parts[0]} is not in 0..{nc - 1}", key)
            continue
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in coords):
            problems.error("coords_out_of_range", f"line {n}: coordinates must be normalised to [0, 1]", key)
            continue
        if kind == "box" and (coords[2] <= 0 or coords[3] <= 0):
            problems.warning("zero_size_box", f"line {n}: box with zero width or height", key)
        canonical = " ".join(parts)
        if canonical in seen:
            problems.warning("duplicate_row", f"line {n}: duplicate label row", key)
            continue
        seen.add(canonical)
        kinds[kind] += 1
        rows.append(int(cls))
    return rows


# ---------------------------------------------------------------- manifest

def _check_manifest(index: _Index, source: DatasetSource, problems: ProblemCollector) -> None:
    if MANIFEST_NAME not in index.size:
        return
    key = source.key_for(MANIFEST_NAME)
    raw = source.read_files([MANIFEST_NAME])[MANIFEST_NAME]
    try:
        if isinstance(raw, Exception):
            raise ValueError(f"cannot read: {raw}")
        manifest = json.loads(raw)
        files = manifest["files"]
        if not isinstance(files, list):
            raise ValueError("'files' is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        problems.error("manifest_invalid", f"manifest.json is not a valid manifest: {exc}", key)
        return
    for n, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("size"), int):
            problems.error("manifest_invalid", f"files[{n}] needs a string 'path' and an integer 'size'", key)
            continue
        path, size = item["path"], item["size"]
        if path not in index.size:
            problems.error("manifest_missing", f"listed in manifest.json but not uploaded: {path}", source.key_for(path))
        elif index.size[path] != size:
            problems.error("manifest_size_mismatch", f"{path} is {index.size[path]} bytes, manifest says {size}",
                           source.key_for(path))
