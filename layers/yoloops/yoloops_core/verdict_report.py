"""The verdict, told with its evidence: one table for Slack, `yoloops run show`, the registry and verdict.json.

metric | challenger | champion | delta on val and test, the largest per-class changes, the rules with their
outcome, and the data diff against the champion's version.
"""

from __future__ import annotations

import json
from typing import Any

from yoloops_core.models import RunContext
from yoloops_core.verdict import Verdict

VERDICT_FILE = "verdict.json"
BASIS_TITLES = {"paired": "like-for-like: both models scored in this job on the same images",
                "recorded": "NOT like-for-like: the champion's recorded number from its own val split",
                "first": "first model of the dataset"}


def verdict_key(run: RunContext) -> str:
    return f"models/{run.dataset.name}/versions/{run.run_id}/{VERDICT_FILE}"


def write_verdict(s3: Any, bucket: str, run: RunContext, report: dict[str, Any]) -> str:
    """verdict.json next to the version's bundle (the bundle itself lands there when it is promoted)."""
    key = verdict_key(run)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(report, indent=2, default=str).encode(),
                  ContentType="application/json")
    return key


def compact_verdict(report: dict[str, Any]) -> dict[str, Any]:
    """What the run record and the workflow state carry: the table, checks, notes and the diff's figures."""
    keep = ("basis", "like_for_like", "compared_with", "metric", "better", "reason", "notes", "checks", "table",
            "class_changes", "new_classes", "removed_classes", "exempt_classes", "data_diff")
    out = {k: report.get(k) for k in keep if report.get(k) not in (None, [], {})}
    diff = dict(out.get("data_diff") or {})
    diff.pop("val_in_champion_train_examples", None)
    if diff:
        out["data_diff"] = diff
    return out


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _delta(value: Any) -> str:
    return "-" if value is None else f"{value:+.4f}"


def table_lines(verdict: dict[str, Any]) -> list[str]:
    """The side-by-side table as fixed-width lines (Slack code block, terminal)."""
    rows = verdict.get("table") or []
    if not rows:
        return []
    lines = [f"{'split':<6}{'metric':<11}{'challenger':>11}{'champion':>10}{'delta':>9}"]
    for r in rows:
        lines.append(f"{r['split']:<6}{r['metric']:<11}{_fmt(r.get('challenger')):>11}"
                     f"{_fmt(r.get('champion')):>10}{_delta(r.get('delta')):>9}")
    changes = verdict.get("class_changes") or []
    if changes:
        lines.append("largest per-class changes (val mAP50-95):")
        for c in changes:
            lines.append(f"  {str(c['class'])[:20]:<20}{_fmt(c['challenger']):>9}{_fmt(c['champion']):>9}"
                         f"{_delta(c['delta']):>9}  ({c['instances']} inst.)")
    return lines


def diff_lines(diff: dict[str, Any] | None) -> list[str]:
    if not diff:
        return []
    if not diff.get("available"):
        return [f"data diff: {diff.get('reason', 'not available')}"] if diff.get("reason") else []
    parts = []
    for split, d in (diff.get("splits") or {}).items():
        parts.append(f"{split} +{d['added']} -{d['removed']} ~{d['changed']} ({d['images']} images)")
    lines = [f"data vs the champion's version {diff.get('champion_version')}: " + "; ".join(parts)]
    if diff.get("val_new_share") is not None:
        lines.append(f"val images new since the champion's version: {diff['val_new_share']:.0%}")
    if diff.get("classes_added") or diff.get("classes_removed"):
        lines.append(f"classes added: {', '.join(diff.get('classes_added') or []) or 'none'}; removed: "
                     f"{', '.join(diff.get('classes_removed') or []) or 'none'}")
    if diff.get("val_in_champion_train"):
        lines.append(f"{diff['val_in_champion_train']} val images were in the champion's training data")
    return lines


def verdict_text(verdict: dict[str, Any] | None) -> str:
    """Plain text of the whole verdict; callers put it in a code block (Slack) or print it (CLI)."""
    if not verdict:
        return ""
    lines = [f"verdict: {'better' if verdict.get('better') else 'not better'} "
             f"({BASIS_TITLES.get(verdict.get('basis', ''), verdict.get('basis', ''))})"]
    lines += table_lines(verdict)
    for check in verdict.get("checks") or []:
        lines.append(f"{'PASS' if check['passed'] else 'FAIL'} {check['rule']}: {check['detail']}")
    lines += [f"note: {n}" for n in verdict.get("notes") or []]
    lines += diff_lines(verdict.get("data_diff"))
    return "\n".join(lines)


def registry_properties(v: Verdict) -> dict[str, str]:
    """The same table in a ModelPackage's CustomerMetadataProperties (values <= 256 chars, 50 keys in all)."""
    props = {"verdict": "better" if v.better else "not better", "verdict_basis": v.basis,
             "like_for_like": str(v.like_for_like).lower(), "compared_with": v.compared_with or "none"}
    for r in v.table:
        props[f"{r['split']}_{r['metric']}"] = (f"challenger {_fmt(r['challenger'])} champion {_fmt(r['champion'])} "
                                                f"delta {_delta(r['delta'])}")
    if v.reason:
        props["verdict_reason"] = v.reason[:256]
    if v.notes:
        props["verdict_notes"] = "; ".join(v.notes)[:256]
    return props
