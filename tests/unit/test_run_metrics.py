"""Notify emits the dashboard's metrics as EMF lines: Runs by Outcome and the run's figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from yoloops_core.models import RunContext, RunStatus
from yoloops_core.outcomes import notify
from yoloops_core.run_metrics import METRICS_NAMESPACE, emit_run_metrics

NOW = datetime(2026, 11, 28, 10, 5, 45, tzinfo=UTC)


def emf_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "_aws" in doc:
            out.append(doc)
    return out


def metric_names(doc: dict) -> set[str]:
    return {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def test_a_promoted_run_is_counted_under_its_outcome_with_its_figures(event, settings, store, sns, capsys):
    ev = event("stepfn_notify_promoted.json")
    run = RunContext.model_validate(ev["state"]["run"])
    store.create_run(run)
    store.record_job(run.run_id, 1, f"{run.run_id}-a1", status=RunStatus.TRAINING)
    store.record_attempt_billing(run.run_id, 1, 1800)
    notify(ev, settings=settings, store=store, sns=sns, now=NOW)
    docs = emf_lines(capsys.readouterr().out)
    (counted,) = [d for d in docs if "Runs" in metric_names(d)]
    assert counted["Outcome"] == "PROMOTED" and counted["Runs"] == [1.0] and counted["service"] == "yoloops"
    assert counted["_aws"]["CloudWatchMetrics"][0]["Namespace"] == METRICS_NAMESPACE
    (figures,) = [d for d in docs if "CostUsd" in metric_names(d)]
    assert figures["RunDurationSeconds"] == [3000.0]
    assert figures["TrainingSeconds"] == [1800.0]
    assert figures["SpotInterruptions"] == [0.0]
    assert figures["CostUsd"][0] > 0


def test_a_run_without_figures_is_still_counted(capsys):
    emit_run_metrics(outcome="REJECTED")
    docs = emf_lines(capsys.readouterr().out)
    assert [d["Outcome"] for d in docs] == ["REJECTED"]


def test_the_dashboard_reads_the_metrics_notify_emits():
    # Every metric the template's dashboard plots from the yoloops namespace is one emit_run_metrics writes.
    import re
    from pathlib import Path

    template = (Path(__file__).resolve().parents[2] / "template.yaml").read_text()
    body = template.split("  OperationsDashboard:", 1)[1].split("\n\n", 1)[0]
    plotted = set(re.findall(r'"yoloops", *"(\w+)"', body))
    assert plotted == {"Runs", "RunDurationSeconds", "TrainingSeconds", "SpotInterruptions", "CostUsd"}


def test_the_final_notification_names_the_pinned_image(event, settings, store, sns):
    ev = event("stepfn_notify_promoted.json")
    run = RunContext.model_validate(ev["state"]["run"])
    store.create_run(run)
    pinned = "123456789012.dkr.ecr.us-east-1.amazonaws.com/yoloops-training@sha256:" + "c" * 64
    store.record_job(run.run_id, 1, f"{run.run_id}-a1", status=RunStatus.TRAINING, image_uri=pinned)
    notify(ev, settings=settings, store=store, sns=sns, now=NOW)
    (msg,) = sns.messages
    assert msg["image_uri"] == pinned
