"""Keep what the state machine carries small: a Step Functions state holds at most 256 KiB.

The validation report rides along the whole run (NotifyRejected and Notify read it), so it is cut to
a bounded size here: the counts stay whole, the listed problems and per-class figures are cut, and
the report says what was cut. The full report stays available from `yoloops dataset validate`.
"""

from __future__ import annotations

import json
from typing import Any

REPORT_BYTES = 32 * 1024  # one report never takes more than an eighth of the state
LISTED = 20  # problems of each kind kept
CLASSES = 100  # class names / per-class counts kept
TEXT = 4000  # characters of the summary text


def _size(value: Any) -> int:
    return len(json.dumps(value, default=str).encode())


def compact_report(report: dict[str, Any], max_bytes: int = REPORT_BYTES) -> dict[str, Any]:
    if _size(report) <= max_bytes:
        return report
    out = dict(report)
    cut: dict[str, int] = {}
    for key in ("errors", "warnings", "problems"):
        items = out.get(key)
        if isinstance(items, list) and len(items) > LISTED:
            out[key], cut[key] = items[:LISTED], len(items)
    if isinstance(out.get("names"), list) and len(out["names"]) > CLASSES:
        out["names"], cut["names"] = out["names"][:CLASSES], len(out["names"])
    if isinstance(out.get("class_instances"), dict) and len(out["class_instances"]) > CLASSES:
        top = sorted(out["class_instances"].items(), key=lambda kv: -kv[1] if isinstance(kv[1], int) else 0)
        out["class_instances"], cut["class_instances"] = dict(top[:CLASSES]), len(out["class_instances"])
    for key in ("summary", "summary_text"):
        if isinstance(out.get(key), str) and len(out[key]) > TEXT:
            out[key] = out[key][:TEXT] + " ..."
    out["truncated"] = cut or True
    if _size(out) > max_bytes:  # still too big (an unexpected field): keep only the scalars and counts
        out = {k: v for k, v in out.items() if not isinstance(v, (list, dict)) or k in ("truncated", "splits")}
        out["truncated"] = cut or True
    return out
