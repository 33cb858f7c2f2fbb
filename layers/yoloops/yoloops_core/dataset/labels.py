"""The rules for one YOLO label file (box or polygon rows), the same for every source.

training_container/yoloops_train/labelcheck.py applies the same rules inside the job (the Lambda may
read only a sample of the labels; the job reads all of them before its first epoch).
"""

from __future__ import annotations

import math
from collections import Counter

from yoloops_core.dataset.report import ProblemCollector


def parse_label(path: str, raw: bytes | Exception | None, nc: int, problems: ProblemCollector, key: str,
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
