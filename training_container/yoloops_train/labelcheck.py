"""Every label file checked before the first epoch, with the validator's rules
(layers/yoloops/yoloops_core/dataset/labels.py): the Lambda reads only a sample of the labels of an
upload without a manifest, so a broken label it did not read must still stop the job, with its reason,
before any GPU time is spent on it. Ultralytics itself would only drop such images with a warning.
"""

from __future__ import annotations

import math
from pathlib import Path

from .common import JobFailure

MAX_LISTED = 10


def label_for(image: Path) -> Path:
    """Ultralytics' img2label_paths: the last /images/ becomes /labels/, the suffix .txt."""
    s = str(image)
    if "/images/" in s:
        head, tail = s.rsplit("/images/", 1)
        s = f"{head}/labels/{tail}"
    return Path(s.rsplit(".", 1)[0] + ".txt")


def row_problem(parts: list[str], nc: int) -> str | None:
    """Why one label row is invalid, or None."""
    if not (len(parts) == 5 or (len(parts) >= 7 and (len(parts) - 1) % 2 == 0)):
        return f"{len(parts)} values; expected 5 (class x y w h) or a class and an even number (>= 6) of polygon coordinates"
    try:
        values = [float(v) for v in parts]
    except ValueError:
        return "non-numeric value"
    cls = values[0]
    if not cls.is_integer() or not (0 <= cls < nc):
        return f"class id {parts[0]} is not in 0..{nc - 1}"
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values[1:]):
        return "coordinates must be normalised to [0, 1]"
    return None


def label_problems(images: list[Path], nc: int, root: Path) -> tuple[list[str], int, int]:
    """(the first problems as 'file line n: why', their total count, label files read) over these images."""
    shown: list[str] = []
    total = checked = 0
    for label in dict.fromkeys(label_for(p) for p in images):
        if not label.is_file():
            continue  # a background image
        checked += 1
        rel = label.relative_to(root) if label.is_relative_to(root) else label
        try:
            text = label.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            total += 1
            if len(shown) < MAX_LISTED:
                shown.append(f"{rel}: cannot be read as UTF-8 text ({type(e).__name__})")
            continue
        for n, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            why = row_problem(parts, nc) if parts else None
            if why:
                total += 1
                if len(shown) < MAX_LISTED:
                    shown.append(f"{rel} line {n}: {why}")
    return shown, total, checked


def check_labels(splits: dict[str, list[Path]], nc: int, root: Path) -> int:
    """Raise JobFailure naming the first broken rows; return how many label files were checked."""
    images = [p for paths in splits.values() for p in paths]
    shown, total, checked = label_problems(images, nc, root)
    if total:
        raise JobFailure(f"dataset rejected before training: {total} broken label rows or files "
                         f"(first {len(shown)}: {'; '.join(shown)})")
    return checked
