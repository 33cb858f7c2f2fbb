"""Fail on checkov findings that checkov-skips.yaml does not explain; warn on skips nothing needs.

checkov exits 1 on any failed check; this gate reads its JSON report instead, so every accepted finding
stays written down with its reason in one reviewed file. Usage (make static):
  .venv-checkov/bin/checkov -f .aws-sam/static/template.json --framework cloudformation --skip-download \
      --quiet --compact -o json > .aws-sam/static/checkov.json
  python scripts/checkov_gate.py .aws-sam/static/checkov.json checkov-skips.yaml
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path
from typing import Any

import yaml

KINDS = {"false-positive", "accepted"}


def load_skips(path: Path) -> list[dict[str, Any]]:
    skips = (yaml.safe_load(path.read_text()) or {}).get("skips") or []
    problems = []
    for i, skip in enumerate(skips):
        where = f"{path.name} entry {i + 1} ({skip.get('check', '?')})"
        if not str(skip.get("check", "")).startswith("CKV"):
            problems.append(f"{where}: 'check' must be a checkov id")
        if not skip.get("resources"):
            problems.append(f"{where}: 'resources' must list resource patterns")
        if skip.get("kind") not in KINDS:
            problems.append(f"{where}: 'kind' must be one of {sorted(KINDS)}")
        if len(str(skip.get("reason", "")).split()) < 8:
            problems.append(f"{where}: 'reason' must say why (8 words at least)")
    if problems:
        raise ValueError("; ".join(problems))
    return skips


def failed_checks(report: Any) -> list[tuple[str, str]]:
    """(check id, resource) of every failed check; raises if the report is not a complete checkov run."""
    runs = report if isinstance(report, list) else [report]
    runs = [r for r in runs if isinstance(r, dict) and r.get("check_type") == "cloudformation"]
    if not runs:
        raise ValueError("no cloudformation results in the checkov report (did checkov run?)")
    failed = []
    for run in runs:
        summary = run.get("summary") or {}
        if summary.get("parsing_errors"):
            raise ValueError(f"checkov could not parse the template: {summary}")
        if not summary.get("passed"):
            raise ValueError(f"checkov passed no check at all, which means it checked nothing: {summary}")
        failed += [(f["check_id"], f["resource"]) for f in run["results"]["failed_checks"]]
    return failed


def gate(failed: list[tuple[str, str]], skips: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(unexplained findings, stale skips)."""
    used = [False] * len(skips)
    unexplained = []
    for check, resource in failed:
        hits = [i for i, s in enumerate(skips) if s["check"] == check
                and any(fnmatch.fnmatchcase(resource, pattern) for pattern in s["resources"])]
        for i in hits:
            used[i] = True
        if not hits:
            unexplained.append(f"{check} {resource}")
    stale = [f"{s['check']} {s['resources']}" for s, u in zip(skips, used, strict=True) if not u]
    return unexplained, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("skips", type=Path)
    args = parser.parse_args(argv)
    failed = failed_checks(json.loads(args.report.read_text()))
    skips = load_skips(args.skips)
    unexplained, stale = gate(failed, skips)
    for line in unexplained:
        print(f"checkov: unexplained finding: {line} (fix it, or add it to {args.skips.name} with a reason)")
    for line in stale:
        print(f"checkov: warning: stale skip (nothing fails it now; remove it once that holds): {line}")
    print(f"checkov: {len(failed)} failed check(s), {len(failed) - len(unexplained)} explained in "
          f"{args.skips.name}, {len(unexplained)} unexplained, {len(stale)} stale skip(s)")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
