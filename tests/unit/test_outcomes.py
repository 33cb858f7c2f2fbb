"""Notify: final run record + exactly one notification per outcome, whatever the state looks like."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from yoloops_core.models import RunContext, RunStatus
from yoloops_core.outcomes import notify

NOW = datetime(2026, 11, 28, 10, 5, 45, tzinfo=UTC)  # 50 min after the fixtures' started_at


def _seed(store, ev, billable=None, attempts=1):
    run = RunContext.model_validate(ev["state"]["run"])
    store.create_run(run)
    store.record_job(run.run_id, attempts, f"{run.run_id}-a{attempts}", status=RunStatus.TRAINING)
    if billable is not None:
        store.record_attempt_billing(run.run_id, 1, billable)
    return run


def _notify(ev, settings, store, sns):
    return notify(ev, settings=settings, store=store, sns=sns, now=NOW)


def test_promoted(event, settings, store, sns):
    ev = event("stepfn_notify_promoted.json")
    run = _seed(store, ev, billable=1800)
    out = _notify(ev, settings, store, sns)
    assert out["outcome"] == "finished" and out["status"] == "PROMOTED"
    (msg,) = sns.messages
    assert msg["event_type"] == "model.promoted" and msg["run_id"] == run.run_id
    assert msg["dataset"] == "pallets" and msg["version"] == "2026-11-28"
    assert msg["metrics"]["mAP50-95"] == pytest.approx(0.613) and msg["delta"]["mAP50-95"] == pytest.approx(0.032)
    assert "0.6130" in msg["text"] and "+0.0320" in msg["text"]
    assert msg["duration_s"] == 3000.0 and msg["cost_usd"] == pytest.approx(0.704)  # 1800 s x $1.408/h
    assert msg["attempts"] == 1
    assert msg["links"]["execution"].endswith(run.execution_arn)
    assert f"jobs/{run.run_id}-a1" in msg["links"]["training_job"] and "logs" in msg["links"]
    assert sns.published[0]["MessageAttributes"]["event_type"]["StringValue"] == "model.promoted"
    rec = store.get_run(run.run_id)
    assert rec["status"] == "PROMOTED" and rec["finished_at"] == "2026-11-28T10:05:45Z"
    assert rec["cost_usd"] == pytest.approx(0.704) and rec["duration_s"] == 3000.0


def test_kept(event, settings, store, sns):
    ev = event("stepfn_notify_kept.json")
    _seed(store, ev)
    assert _notify(ev, settings, store, sns)["status"] == "KEPT"
    (msg,) = sns.messages
    assert msg["event_type"] == "champion.kept" and msg["delta"]["mAP50-95"] == pytest.approx(-0.011)
    assert "not better than the champion" in msg["text"]


def test_rejected_carries_the_report(event, settings, store, sns):
    ev = event("stepfn_notify_rejected.json")
    run = _seed(store, ev)
    _notify(ev, settings, store, sns)
    (msg,) = sns.messages
    assert msg["event_type"] == "dataset.rejected"
    assert msg["report"]["errors"][0] == "data.yaml: 'val' is missing"
    assert "data.yaml: 'val' is missing" in msg["text"]
    assert store.get_run(run.run_id)["status"] == "REJECTED"


def test_budget_blocked_states_the_figures(event, settings, store, sns):
    ev = event("stepfn_notify_budget_blocked.json")
    _seed(store, ev)
    _notify(ev, settings, store, sns)
    (msg,) = sns.messages
    assert msg["event_type"] == "budget.blocked"
    assert "$1.41" in msg["reason"] and "$99.00" in msg["reason"] and "$100.00" in msg["reason"]


def test_training_failed_carries_the_failure_reason(event, settings, store, sns):
    ev = event("stepfn_notify_training_failed.json")
    run = _seed(store, ev, billable=95)
    _notify(ev, settings, store, sns)
    (msg,) = sns.messages
    assert msg["event_type"] == "training.failed"
    assert msg["reason"].startswith("AlgorithmError: dataset YAML data.yaml has no 'val' entry")
    rec = store.get_run(run.run_id)
    assert rec["status"] == "FAILED" and rec["failure_reason"] == msg["reason"]


def test_malformed_input_creates_a_minimal_failed_record(event, settings, store, sns):
    ev = event("stepfn_notify_malformed_input.json")
    out = _notify(ev, settings, store, sns)
    assert out["status"] == "FAILED"
    (msg,) = sns.messages
    assert msg["run_id"] == "ds-bad-input-1"
    assert "InvalidInput" in msg["reason"] and "dataset.name" in msg["reason"] and "trigger" in msg["reason"]
    assert store.get_run("ds-bad-input-1")["status"] == "FAILED"


@pytest.mark.parametrize("ev", [
    {},
    {"outcome": "exploded", "state": ["not", "a", "dict"]},
    {"outcome": "finished", "run_id": "r1", "state": {"evaluation": "nope", "promotion": 3}},
    {"outcome": "rejected", "run_id": "r2", "state": {"validation": {"report": ["x"]}}},
    {"outcome": "budget_blocked", "run_id": "r3", "state": {"gate": {"budget": {"spent_usd": "a lot"}}}},
    {"outcome": "failed", "run_id": "r4", "state": {"error": {"Error": 5, "Cause": {"x": 1}},
                                                     "run": {"dataset": "flat", "started_at": "yesterday"}}},
    None,
    "a string",
])
def test_any_state_shape_is_reported_never_raises(ev, settings, store, sns):
    out = notify(ev, settings=settings, store=store, sns=sns, now=NOW)
    assert out["status"] in {s.value for s in RunStatus}
    assert len(sns.published) == 1 and sns.messages[0]["text"]


def test_garbage_fixture_is_a_failure(event, settings, store, sns):
    out = _notify(event("stepfn_notify_garbage.json"), settings, store, sns)
    assert out == {"outcome": "failed", "status": "FAILED", "message_id": "m-1"}
    assert store.get_run("unknown-run")["status"] == "FAILED"


def test_publish_errors_raise(event, settings, store):
    class Down:
        def publish(self, **_):
            raise RuntimeError("SNS unavailable")

    with pytest.raises(RuntimeError, match="SNS unavailable"):
        notify(event("stepfn_notify_promoted.json"), settings=settings, store=store, sns=Down(), now=NOW)
