"""YOLO dataset rules, applied identically to every DatasetSource (local dir, S3 prefix, zip)."""

from __future__ import annotations

import json
import posixpath
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from yoloops_core.dataset.discover import (
    SPLITS,
    Index,
    class_names,
    dataset_root,
    find_yaml,
    label_studio,
    suffix,
)
from yoloops_core.dataset.labels import parse_label
from yoloops_core.dataset.layouts import (
    DEFAULT_VAL_FRACTION,
    LABEL_STUDIO,
    choose_val,
    detect_layout,
    split_key,
)
from yoloops_core.dataset.leakage import PICKLE_SUFFIXES, check_overlap, check_pickles
from yoloops_core.dataset.manifest import MANIFEST_NAME
from yoloops_core.dataset.report import AutoSplit, DatasetReport, ProblemCollector, SplitStats
from yoloops_core.dataset.sources import DatasetNotFound, DatasetSource

# Ultralytics' IMG_FORMATS.
IMAGE_SUFFIXES = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"})
REQUIRED_SPLITS = ("train", "val")
MOSTLY_BACKGROUND = 0.5  # warn when more than half of a split has no labels
# Files a dataset folder commonly carries that are neither images nor labels: not worth a warning.
IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "readme", "readme.md", "readme.txt", "readme.roboflow.txt",
                           "license", "license.txt", "classes.txt"})


def img2label(path: str) -> str:
    """Ultralytics' rule: the last `/images/` becomes `/labels/`, the suffix becomes `.txt`."""
    p = "/" + path
    if "/images/" in p:
        head, tail = p.rsplit("/images/", 1)
        p = f"{head}/labels/{tail}"
    return p[1:].rsplit(".", 1)[0] + ".txt"


def _reported_elsewhere(path: str) -> bool:
    """Commonly carried files (no warning) and pickles (their own warning, leakage.check_pickles)."""
    name = posixpath.basename(path).lower()
    return name in IGNORED_NAMES or name.endswith(PICKLE_SUFFIXES)


def _stem(path: str) -> str:
    return posixpath.basename(path).rsplit(".", 1)[0]


@dataclass
class _Split:
    name: str
    images: list[str] = field(default_factory=list)
    stats: SplitStats = field(default_factory=SplitStats)
    found: bool = True  # False when a path it names does not exist (already an error)


def validate_source(source: DatasetSource, *, val_fraction: float = DEFAULT_VAL_FRACTION,
                    label_sample: int | None = None) -> DatasetReport:
    """Validate one dataset. Problems in the data end up in the report; only infrastructure errors raise.

    val_fraction: share of train moved to val (by file-name hash) when the dataset has no val split.
    label_sample: read at most this many label files that the source cannot serve for free (S3 GETs);
    None reads them all. Structure (pairing, YAML, classes) is always checked in full.
    """
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
    index = Index(entries)
    report.files = len(entries)
    report.bytes = sum(max(e.size, 0) for e in entries)
    key = source.key_for

    data, yaml_problem = find_yaml(source, index)
    if data is None:
        data = label_studio(source, index, problems)
        if data is None:
            problems.error(*yaml_problem)
            return _finish(report, problems)
        report.layout = LABEL_STUDIO
    yaml_path, cfg = data
    report.yaml = yaml_path
    report.layout = report.layout or detect_layout(cfg, yaml_path, index.dirs)
    names = class_names(cfg, problems, key(yaml_path))
    report.names = names
    report.nc = len(names) if names else None
    root = dataset_root(cfg, yaml_path, index)

    splits: list[_Split] = []
    for split in SPLITS:
        value = cfg.get(split)
        if value in (None, "", []):
            if split == "train" or (split == "val" and val_fraction <= 0):
                problems.error("split_missing", f"the YAML has no '{split}' entry", key(yaml_path))
            continue
        # A Roboflow export without a test (or, generated 100% train, a valid) folder still names it.
        missing_ok = split == "test" or (split == "val" and report.layout == "roboflow" and val_fraction > 0)
        resolved = _resolve_split(split, value, root, index, source, problems, key(yaml_path), missing_ok)
        if resolved.found or resolved.images or not missing_ok:
            splits.append(resolved)
    if "val" not in {s.name for s in splits} and val_fraction > 0:
        splits += _auto_split(splits, val_fraction, report)

    _check_images_and_labels(splits, index, source, names, problems, report, label_sample)
    _check_manifest(index, source, problems)
    fingerprints = {e.path: e.fingerprint for e in entries}
    report.index = {s.name: {p: fingerprints.get(p, "") for p in s.images} for s in splits}
    check_overlap(report.index, report, problems)
    check_pickles(sorted(fingerprints), problems, key)
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


def _auto_split(splits: list[_Split], fraction: float, report: DatasetReport) -> list[_Split]:
    """No val split: move the train images that choose_val picks (by file-name hash) to a new val split."""
    train = next((s for s in splits if s.name == "train"), None)
    if train is None or not train.images:
        return []
    picked = choose_val(train.images, fraction)
    val = _Split("val", images=[p for p in train.images if p in picked])
    train.images = [p for p in train.images if p not in picked]
    report.auto_split = AutoSplit(fraction=fraction, train=len(train.images), val=len(val.images))
    return [val]


def _locate(ref: str, root: str, index: Index, *, also: str | None = None) -> str | None:
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


def _resolve_split(name: str, value: Any, root: str, index: Index, source: DatasetSource,
                   problems: ProblemCollector, yaml_key: str, missing_ok: bool = False) -> _Split:
    split = _Split(name)
    refs = value if isinstance(value, list) else [value]
    for ref in refs:
        if not isinstance(ref, str):
            problems.error("split_invalid", f"'{name}' must be a path or a list of paths, got {ref!r}", yaml_key)
            continue
        found = _locate(ref, root, index)
        if found is None:
            if missing_ok:
                problems.warning("split_not_found", f"'{name}: {ref}' does not exist in the dataset; "
                                 + ("no test split" if name == "test" else "val is split off train instead"),
                                 yaml_key)
            else:
                problems.error("split_not_found", f"'{name}: {ref}' does not exist in the dataset", yaml_key)
            split.found = False
        elif found in index.size:
            split.images += _read_image_list(found, root, index, source, problems)
        else:
            for path in index.under(found):
                ext = suffix(path)
                if ext in IMAGE_SUFFIXES:
                    split.images.append(path)
                elif ext != "txt" and not _reported_elsewhere(path):
                    # .txt next to images are labels (no /images/ dir) and are checked with them.
                    problems.warning("unknown_extension", f"not an image format YOLO reads (.{ext})",
                                     source.key_for(path))
    return split


def _read_image_list(path: str, root: str, index: Index, source: DatasetSource,
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
        elif suffix(found) not in IMAGE_SUFFIXES:
            problems.warning("unknown_extension", f"line {n}: '{ref}' is not an image format YOLO reads",
                             source.key_for(path))
        else:
            images.append(found)
    return images


# ---------------------------------------------------------------- images and labels

def _check_images_and_labels(splits: list[_Split], index: Index, source: DatasetSource, names: list[str],
                             problems: ProblemCollector, report: DatasetReport, label_sample: int | None) -> None:
    key = source.key_for
    nc = len(names)
    wanted: dict[str, list[tuple[_Split, str]]] = {}
    owners: list[dict[str, str]] = []
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
        owners.append(owner)
    # Label files in the splits' label folders that belong to no image (of any split: an automatic
    # split takes val images out of train's folders).
    owned = {lbl for owner in owners for lbl in owner}
    label_dirs = {posixpath.dirname(lbl) for owner in owners for lbl in owner}
    image_dirs = {posixpath.dirname(img) for owner in owners for img in owner.values()}
    for d in sorted(label_dirs - image_dirs):
        for path in index.under(d):
            if posixpath.dirname(path) != d or path in owned:
                continue
            if suffix(path) != "txt":
                if not _reported_elsewhere(path):
                    problems.warning("unknown_extension", f"unexpected file in a label folder (.{suffix(path)})",
                                     key(path))
            else:
                problems.warning("orphan_label", "label file without a matching image", key(path))

    to_read = _labels_to_read(list(wanted), source, label_sample)
    report.labels_total, report.labels_checked = len(wanted), len(to_read)
    report.label_check = "full" if len(to_read) == len(wanted) else "sampled"
    contents = source.read_files(to_read)
    counts: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    for label, users in wanted.items():
        if label not in contents:  # not in the sample: the listing's size still tells labelled from empty
            for split, _image in users:
                if index.size[label] > 0:
                    split.stats.labels += 1
                else:
                    split.stats.backgrounds += 1
            continue
        raw = contents.get(label)
        rows = parse_label(label, raw, nc, problems, key(label), kinds)
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


def _labels_to_read(labels: list[str], source: DatasetSource, sample: int | None) -> list[str]:
    """Every label the source serves for free (inline manifest texts), plus at most `sample` that cost a
    GET each, picked by name hash so the sample spreads over splits and folders."""
    is_free = getattr(source, "is_free", None)
    if sample is None or is_free is None:
        return labels
    costly = [p for p in labels if not is_free(p)]
    if len(costly) <= sample:
        return labels
    keep = set(sorted(costly, key=lambda p: (split_key(p), p))[:sample])
    return [p for p in labels if p in keep or is_free(p)]


# ---------------------------------------------------------------- manifest

def _check_manifest(index: Index, source: DatasetSource, problems: ProblemCollector) -> None:
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
