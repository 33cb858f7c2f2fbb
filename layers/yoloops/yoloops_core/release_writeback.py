"""Results back on the release: a release-triggered run's verdict, metric table and cost go into the
release body, and its model bundle becomes release assets (issue 19 item 4).

Runs on the run's final notification (an SNS subscriber), only for runs a GitHub release started (or retries
of one), and only when the GitHub token secret holds a token: without one, nothing is called and nothing changes.
Idempotent, so a redelivered notification or a retry after a half-done write changes nothing more:
  - the body gets one section per run between `<!-- yoloops:run <id> -->` markers, replaced in place;
  - an asset whose name the release already has is not uploaded again;
  - the run record's `release_writeback` says it was done, and a later delivery stops there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from yoloops_core.github_api import GithubApi, GithubApiError, repo_and_tag, usable_token
from yoloops_core.models import EventType, iso, utcnow
from yoloops_core.notifications import Notification
from yoloops_core.pricing import format_usd
from yoloops_core.promote import ensure_version, list_files

logger = Logger(child=True)

FINAL_EVENTS = {EventType.PROMOTED, EventType.KEPT, EventType.FAILED, EventType.REJECTED,
                EventType.BUDGET_BLOCKED, EventType.NOT_APPROVED}
MODEL_EVENTS = {EventType.PROMOTED, EventType.KEPT}
VERDICTS = {EventType.PROMOTED: "PROMOTED", EventType.KEPT: "KEPT", EventType.FAILED: "FAILED",
            EventType.REJECTED: "REJECTED", EventType.BUDGET_BLOCKED: "BUDGET BLOCKED",
            EventType.NOT_APPROVED: "NOT APPROVED"}


@dataclass(frozen=True)
class WritebackDeps:
    store: Any
    s3: Any
    bucket: str
    token: Callable[[], str | None]  # the GitHub token secret's value (read only for release runs)
    api: Callable[[str], GithubApi]  # token -> adapter


def _begin(run_id: str) -> str:
    return f"<!-- yoloops:run {run_id} -->"


def _end(run_id: str) -> str:
    return f"<!-- /yoloops:run {run_id} -->"


def with_section(body: str, run_id: str, section: str) -> str:
    """The body with the run's marked section replaced (or appended): the same input, the same body."""
    block = f"{_begin(run_id)}\n{section.strip()}\n{_end(run_id)}"
    pattern = re.compile(re.escape(_begin(run_id)) + r".*?" + re.escape(_end(run_id)), re.DOTALL)
    if pattern.search(body):
        return pattern.sub(lambda _m: block, body, count=1)
    return f"{body.rstrip()}\n\n{block}\n" if body.strip() else f"{block}\n"


def render_section(note: Notification) -> str:
    """Markdown: the verdict, a metric table (this run, champion, delta) and what the run cost."""
    lines = [f"### yoloops: {VERDICTS.get(note.event_type, note.event_type.value)}", "", note.text.strip(), ""]
    if note.metrics:
        lines += ["| metric | this run | champion | delta |", "|---|---:|---:|---:|"]
        for name, value in sorted(note.metrics.items()):
            delta = note.delta.get(name)
            champion = f"{value - delta:.4f}" if delta is not None else "-"
            shown = f"{delta:+.4f}" if delta is not None else "-"
            lines.append(f"| {name} | {value:.4f} | {champion} | {shown} |")
        lines.append("")
    cost = format_usd(note.cost_usd) if note.cost_usd is not None else "unknown"
    facts = [f"cost {cost}"]
    if note.spot_savings_pct is not None:
        facts.append(f"spot saved {note.spot_savings_pct:.0f}%")
    if note.attempts:
        facts.append(f"{note.attempts} attempt{'s' if note.attempts != 1 else ''}")
    if note.duration_s is not None:
        facts.append(f"{note.duration_s / 60:.1f} min")
    facts.append(f"run `{note.run_id}`")
    lines.append(" · ".join(facts))
    if note.links.get("execution", "").startswith("https://"):
        lines.append(f"[workflow execution]({note.links['execution']})")
    return "\n".join(lines)


def asset_name(relative: str) -> str:
    """Bundle path -> asset name (assets are flat): best_openvino_model/best.xml -> best_openvino_model.best.xml."""
    return relative.replace("/", ".")


def release_url(store: Any, record: dict[str, Any], max_hops: int = 5) -> str | None:
    """The release a run answers to: its own (a release run), or, for a retry, the retried run's, so a
    failed release run retried with `yoloops run retry` still reports to its release."""
    for _ in range(max_hops):
        if record.get("trigger_source") == "github":
            return str(record.get("trigger_ref") or "") or None
        if record.get("trigger_source") != "retry" or not record.get("trigger_ref"):
            return None
        record = store.get_run(str(record["trigger_ref"])) or {}
    return None


def write_back(note: Notification, deps: WritebackDeps) -> dict[str, Any]:
    if note.event_type not in FINAL_EVENTS or not note.run_id:
        return {"written": False, "why": f"{note.event_type.value} is not a run's final outcome"}
    record = deps.store.get_run(note.run_id) or {}
    url = release_url(deps.store, record)
    if url is None:
        return {"written": False, "why": "not a release run"}
    if record.get("release_writeback"):
        return {"written": False, "why": "already written back", **record["release_writeback"]}
    token = deps.token()
    if not usable_token(token):
        logger.info("no GitHub token in the secret: the release is left as it is", extra={"run_id": note.run_id})
        return {"written": False, "why": "no GitHub token"}
    repo, tag = repo_and_tag(url)
    api = deps.api(str(token))
    release = api.release_by_tag(repo, tag)
    body = with_section(release.get("body") or "", note.run_id, render_section(note))
    edited = body != (release.get("body") or "")
    if edited:
        api.update_body(repo, int(release["id"]), body)
    uploaded: list[str] = []
    if note.event_type in MODEL_EVENTS:
        prefix = ensure_version(deps.s3, deps.bucket, record)  # a KEPT run's bundle, from its model.tar.gz
        existing = {a.get("name") for a in api.assets(repo, int(release["id"]))}
        for rel, size in sorted(list_files(deps.s3, deps.bucket, prefix).items()):
            name = asset_name(rel)
            if name in existing:
                continue
            obj = deps.s3.get_object(Bucket=deps.bucket, Key=prefix + rel)
            try:
                api.upload_asset(release, name, obj["Body"], size)
            except GithubApiError as exc:
                if exc.status != 422:  # 422 already_exists: a concurrent delivery uploaded it first
                    raise
            uploaded.append(name)
    done = {"release": f"{repo}@{tag}", "release_id": int(release["id"]), "at": iso(utcnow()),
            "assets": sorted(uploaded)}
    deps.store.update_run(note.run_id, note=f"results written to release {repo}@{tag}", release_writeback=done)
    logger.info("release written back", extra={"run_id": note.run_id, **done, "body_edited": edited})
    return {"written": True, "body_edited": edited, **done}


def default_deps() -> WritebackDeps:
    """Real collaborators from settings (the handler's wiring)."""
    from yoloops_core import aws
    from yoloops_core.config import get_settings
    from yoloops_core.store import RunStore

    settings = get_settings()
    arn = settings.github_token_secret_arn
    return WritebackDeps(
        store=RunStore(settings.runs_table), s3=aws.client("s3"), bucket=settings.artifacts_bucket,
        token=lambda: aws.secret(arn) if arn else None,
        api=lambda token: GithubApi(token, settings.github_api_url),
    )
