"""Finding a dataset's configuration in a listing: the YAML (any *.yaml with train/val/names), or for
a YAML-less Label Studio export its classes.txt; the class names; the dataset root."""

from __future__ import annotations

import posixpath
from typing import Any

import yaml

from yoloops_core.dataset.layouts import parse_classes_txt
from yoloops_core.dataset.report import ProblemCollector
from yoloops_core.dataset.sources import DatasetSource, FileEntry

SPLITS = ("train", "val", "test")


def suffix(path: str) -> str:
    name = posixpath.basename(path)
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


class Index:
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


def find_yaml(source: DatasetSource, index: Index) -> tuple[tuple[str, dict] | None, tuple[str, str, str | None]]:
    """((path, config), _) for the dataset YAML, or (None, the problem to report if no other layout fits)."""
    candidates = sorted(
        (p for p in index.size if suffix(p) in ("yaml", "yml")),
        key=lambda p: (p.count("/"), posixpath.basename(p).lower() != "data.yaml", p),
    )
    if not candidates:
        return None, ("yaml_missing", "unsupported layout: no dataset YAML (data.yaml or any *.yaml with "
                      "train/val/names) and no classes.txt next to images/ and labels/ (Label Studio's YOLO "
                      "export)", None)
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
            return (path, cfg), ("", "", None)
        first_problem = first_problem or ("yaml_invalid", "YAML has no train/val and names/nc entries", path)
    code, message, path = first_problem or ("yaml_missing", "no dataset YAML found", "")
    return None, (code, message, source.key_for(path) if path else None)


def label_studio(source: DatasetSource, index: Index, problems: ProblemCollector) -> tuple[str, dict] | None:
    """A YAML-less export: the shallowest classes.txt names the classes, images/ next to it holds the
    images (images/train, images/val, images/test as splits when present). None if there is no classes.txt."""
    found = sorted((p for p in index.size if posixpath.basename(p).lower() == "classes.txt"),
                   key=lambda p: (p.count("/"), p))
    if not found:
        return None
    path = found[0]
    raw = source.read_files([path])[path]
    names: list[str] = []
    if isinstance(raw, Exception):
        problems.error("unreadable", f"cannot read classes.txt: {raw}", source.key_for(path))
    else:
        try:
            names = parse_classes_txt(raw.decode("utf-8"))
        except UnicodeDecodeError:
            problems.error("unreadable", "classes.txt is not UTF-8 text", source.key_for(path))
    base = posixpath.dirname(path)
    images = posixpath.join(base, "images") if base else "images"
    if images not in index.dirs:
        problems.error("unsupported_layout", "unsupported layout: classes.txt but no images/ folder next to it "
                       "(Label Studio's YOLO export has images/, labels/ and classes.txt)", source.key_for(path))
    cfg: dict[str, Any] = {"names": names}  # empty -> names_invalid "names is empty" [classes.txt]
    subdirs = {s: f"images/{s}" for s in SPLITS if posixpath.join(images, s) in index.dirs}
    cfg.update(subdirs if "train" in subdirs else {"train": "images"})
    return path, cfg


def class_names(cfg: dict, problems: ProblemCollector, key: str) -> list[str]:
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


def dataset_root(cfg: dict, yaml_path: str, index: Index) -> str:
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
