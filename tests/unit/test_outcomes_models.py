"""Notify and models: useless-model warnings, Evaluate's reasons, registry trouble and base weights reach the message."""

from __future__ import annotations

from datetime import UTC, datetime

from yoloops_core.models import RunContext, RunStatus
from yoloops_core.outcomes import notify
from yoloops_core.slack import render

NOW = datetime(2026, 11, 28, 10, 5, 45, tzinfo=UTC)


def _notify(ev, settings, store, sns, base_weights="models/shapes/versions/ds-pallets-v1/best.pt"):
    run = RunContext.model_validate(ev["state"]["run"])
    store.create_run(run)
    store.record_job(run.run_id, 1, f"{run.run_id}-a1", status=RunStatus.TRAINING, base_weights=base_weights)
    notify(ev, settings=settings, store=store, sns=sns, now=NOW)
    (msg,) = sns.messages
    return msg


def test_a_useless_model_promoted_says_so_and_base_weights_are_shown(event, settings, store, sns):
    ev = event("stepfn_notify_promoted.json")
    ev["state"]["evaluation"]["result"]["warning"] = "mAP50-95 is exactly 0: this model detects nothing and is useless"
    msg = _notify(ev, settings, store, sns)
    assert "useless" in msg["text"] and msg["base_weights"] == "models/shapes/versions/ds-pallets-v1/best.pt"
    fields = [f["text"] for b in render(msg)["blocks"] for f in b.get("fields") or []]
    assert any("Base weights" in f and "champion ds-pallets-v1" in f for f in fields)


def test_kept_uses_evaluates_reason_over_the_asl_default(event, settings, store, sns):
    ev = event("stepfn_notify_kept.json")
    ev["state"]["evaluation"]["result"]["reason"] = "first model of the dataset: mAP50-95 0.0100 is below MinFirstMetric 0.3"
    ev["state"]["evaluation"]["result"]["registry_error"] = "model registry: ClientError: AccessDenied"
    msg = _notify(ev, settings, store, sns, base_weights="scratch:yolo11n.yaml")
    assert "below MinFirstMetric 0.3" in msg["text"] and "AccessDenied" in msg["text"]
    assert msg["base_weights"] == "scratch:yolo11n.yaml"
