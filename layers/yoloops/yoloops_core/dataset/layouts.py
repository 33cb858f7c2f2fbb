"""The layouts people export, and the deterministic validation split for datasets that have none.

- Ultralytics: a YAML, `images/<split>` + `labels/<split>`.
- Roboflow: a YAML with `../train/images` paths, `train/ valid/ test/` each with images/ + labels/.
- CVAT "Ultralytics YOLO": `path: ./`, `train: train.txt` (image lists relative to the root), usually no val.
- Label Studio YOLO: `images/`, `labels/`, `classes.txt`, no YAML at all.

The split rule is duplicated, on purpose, in training_container/yoloops_train/layouts.py (the container
does not import yoloops_core); tests/container/test_normalize_layouts.py asserts both pick the same images.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable

DEFAULT_VAL_FRACTION = 0.15
LABEL_STUDIO = "label_studio"
LAYOUT_TITLES = {
    "ultralytics": "Ultralytics (images/<split> + labels/<split>)",
    "roboflow": "Roboflow export (train/ valid/ test/, ../train/images paths)",
    "cvat": "CVAT Ultralytics YOLO export (image lists such as train.txt)",
    LABEL_STUDIO: "Label Studio YOLO export (images/ + labels/ + classes.txt, no YAML)",
    "yaml": "a dataset YAML",
}


def split_key(path: str) -> float:
    """Where an image falls in [0, 1): sha256 of its file stem. Only the name counts, so a re-upload keeps
    its split and adding images never moves the others."""
    stem = posixpath.basename(path).rsplit(".", 1)[0]
    return int.from_bytes(hashlib.sha256(stem.encode("utf-8")).digest()[:8], "big") / 2.0**64


def choose_val(paths: Iterable[str], fraction: float) -> set[str]:
    """The images that go to val: those whose split_key is below `fraction`. A dataset too small for the
    fraction to pick any still gets one val image (the lowest key); train always keeps one (the highest)."""
    ordered = sorted(set(paths), key=lambda p: (split_key(p), p))
    val = {p for p in ordered if split_key(p) < fraction}
    if len(ordered) >= 2 and not val and fraction > 0:
        val = {ordered[0]}
    if ordered:
        val.discard(ordered[-1])
    return val


def detect_layout(cfg: dict, yaml_path: str, listed_dirs: set[str]) -> str:
    """Name the export a YAML came from (for the report; the rules that read it are the same)."""
    refs = []
    for split in ("train", "val", "test"):
        value = cfg.get(split)
        refs += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    if any(r.strip().lower().endswith(".txt") for r in refs):
        return "cvat"
    base = posixpath.dirname(yaml_path)
    if any(r.strip().startswith("../") for r in refs) or posixpath.join(base, "train/images") in listed_dirs:
        return "roboflow"
    if any("images/" in r or r.strip().startswith("images") for r in refs):
        return "ultralytics"
    return "yaml"


def parse_classes_txt(text: str) -> list[str]:
    """Label Studio's classes.txt: one class name per line, class id = line number (0-based)."""
    return [line.strip() for line in text.splitlines() if line.strip()]
