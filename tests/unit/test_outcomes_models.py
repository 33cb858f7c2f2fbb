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


def test_the_verdict_table_reaches_slack_with_its_evidence(event, settings, store, sns):
    """A kept run shows metric | challenger | champion | delta, the failed rule and the data diff."""
    ev = event("stepfn_notify_kept.json")
    result = ev["state"]["evaluation"]["result"]
    result.update(basis="paired", like_for_like=True, challenger=0.003, champion=0.08, reason="not better", verdict={
        "basis": "paired", "better": False, "metric": "mAP50-95",
        "table": [{"split": "val", "metric": "mAP50-95", "challenger": 0.003, "champion": 0.08, "delta": -0.077}],
        "checks": [{"rule": "val", "passed": False, "detail": "mAP50-95 0.0030 vs 0.0800 (-0.0770; MinImprovement 0)"}],
        "class_changes": [{"class": "square", "challenger": 0.001, "champion": 0.1, "delta": -0.099, "instances": 40}],
        "data_diff": {"available": True, "champion_version": "v1", "splits": {
            "val": {"added": 12, "removed": 30, "changed": 0, "images": 12}}, "val_new_share": 1.0}})
    msg = _notify(ev, settings, store, sns)
    assert "both scored on the same images" in msg["text"]
    verdict = next(b["text"]["text"] for b in render(msg)["blocks"] if b.get("text", {}).get("text", "").startswith("*Verdict*"))
    assert "val   mAP50-95        0.0030    0.0800  -0.0770" in verdict
    assert "FAIL val" in verdict and "square" in verdict and "val +12 -30 ~0 (12 images)" in verdict
    assert "val images new since the champion's version: 100%" in verdict
