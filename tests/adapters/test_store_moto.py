"""RunStore against moto's DynamoDB: record layout, idempotency, GSI queries, conditional champion writes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from yoloops_core.models import RunContext, RunStatus
from yoloops_core.store import RunStore, StoreError, from_dynamo, to_dynamo

NOW = datetime(2026, 11, 28, 9, 15, 45, tzinfo=UTC)


@pytest.fixture
def store(aws):
    return RunStore(aws.table)


def _ctx(event, run_id="ds-pallets-2026-11-28", started_at="2026-11-28T09:15:45Z"):
    return RunContext.model_validate(dict(event("stepfn_check_budget_ok.json")["run"], run_id=run_id,
                                          started_at=started_at))


def test_decimal_conversion_round_trip():
    value = {"a": 0.1, "b": 3, "c": [1.5, {"d": 2.0}], "e": None, "f": True}
    dyn = to_dynamo(value)
    assert dyn["a"] == Decimal("0.1") and "e" not in dyn and dyn["f"] is True
    assert from_dynamo(dyn) == {"a": 0.1, "b": 3, "c": [1.5, {"d": 2}], "f": True}


def test_create_run_is_idempotent_and_follows_the_layout(aws, store, event):
    assert store.create_run(_ctx(event), now=NOW) is True
    assert store.create_run(_ctx(event), now=NOW) is False
    raw = aws.client("dynamodb").get_item(TableName=aws.table, Key={"pk": {"S": "RUN#ds-pallets-2026-11-28"},
                                                                    "sk": {"S": "RUN"}})["Item"]
    assert raw["status"] == {"S": "STARTED"} and raw["month"] == {"S": "2026-11"}
    assert raw["attempts"] == {"N": "0"} and raw["dataset"] == {"S": "pallets"}
    assert len(raw["history"]["L"]) == 1


def test_updates_history_jobs_billing_and_maps(store, event):
    store.create_run(_ctx(event), now=NOW)
    run_id = "ds-pallets-2026-11-28"
    store.record_job(run_id, 1, f"{run_id}-a1", status=RunStatus.TRAINING, note="admitted", worst_case_cost_usd=1.408)
    store.record_attempt_billing(run_id, 1, 600)
    store.record_attempt_billing(run_id, 1, 600)  # re-invoked: not double counted
    store.record_job(run_id, 2, f"{run_id}-a2", note="retry")
    store.record_job(run_id, 2, f"{run_id}-a2", note="retry again")
    store.record_attempt_billing(run_id, 2, 900.5)
    store.update_run(run_id, status=RunStatus.EVALUATING, metrics={"mAP50-95": 0.61}, delta=None)
    rec = store.get_run(run_id)
    assert rec["status"] == "EVALUATING" and rec["attempts"] == 2
    assert rec["job_names"] == [f"{run_id}-a1", f"{run_id}-a2"] and rec["current_job"] == f"{run_id}-a2"
    assert rec["billable_by_attempt"] == {"1": 600, "2": 900.5} and rec["billable_seconds"] == 1500.5
    assert rec["metrics"] == {"mAP50-95": 0.61} and rec["worst_case_cost_usd"] == 1.408
    # Status changes and notes both land in history; note-only entries carry no status.
    assert [h.get("status") for h in rec["history"]] == ["STARTED", "TRAINING", None, None, "EVALUATING"]
    assert [h["note"] for h in rec["history"]][2:4] == ["retry", "retry again"]
    with pytest.raises(Exception, match="ConditionalCheckFailed"):
        store.update_run("no-such-run", status=RunStatus.FAILED)


def test_by_month_and_in_flight(store, event):
    store.create_run(_ctx(event, "r-oct", "2026-10-31T23:00:00Z"))
    store.update_run("r-oct", status=RunStatus.TRAINING)
    store.create_run(_ctx(event, "r-nov-done"))
    store.update_run("r-nov-done", status=RunStatus.PROMOTED, cost_usd=2.5)
    store.create_run(_ctx(event, "r-nov"))
    store.create_run(_ctx(event, "r-sep", "2026-09-01T00:00:00Z"))
    assert {r["run_id"] for r in store.list_runs_by_month("2026-11")} == {"r-nov-done", "r-nov"}
    assert {r["run_id"] for r in store.list_in_flight("2026-11")} == {"r-oct", "r-nov"}


def test_champion_conditional_write_keeps_the_better(store):
    assert store.put_champion_if_better("pallets", "run-b", "mAP50-95", 0.7, {"mAP50-95": 0.7}, "k/b") is True
    # A worse model finishing later cannot replace it, nor can an equal one.
    assert store.put_champion_if_better("pallets", "run-a", "mAP50-95", 0.6, {"mAP50-95": 0.6}, "k/a") is False
    assert store.put_champion_if_better("pallets", "run-c", "mAP50-95", 0.7, {"mAP50-95": 0.7}, "k/c") is False
    # The same run again (re-invoked Promote) succeeds without a second history entry.
    assert store.put_champion_if_better("pallets", "run-b", "mAP50-95", 0.7, {"mAP50-95": 0.7}, "k/b") is True
    assert store.put_champion_if_better("pallets", "run-d", "mAP50-95", 0.75, {"mAP50-95": 0.75}, "k/d") is True
    champ = store.get_champion("pallets")
    assert champ["run_id"] == "run-d" and champ["metric_value"] == 0.75 and champ["previous_run_id"] == "run-b"
    assert [(h["action"], h["run_id"]) for h in store.champion_history("pallets")] == \
        [("promote", "run-d"), ("promote", "run-b")]


def test_manual_promote_and_rollback_walk_back(store):
    store.put_champion_if_better("ds", "r1", "mAP50-95", 0.5, {}, "k1", now=datetime(2026, 11, 1, tzinfo=UTC))
    store.put_champion_if_better("ds", "r2", "mAP50-95", 0.6, {}, "k2", now=datetime(2026, 11, 2, tzinfo=UTC))
    store.set_champion_manually("ds", "r0", "mAP50-95", 0.4, {"mAP50-95": 0.4}, "k0", actor="alice",
                                now=datetime(2026, 11, 3, tzinfo=UTC))
    assert store.get_champion("ds")["run_id"] == "r0"
    assert store.champion_history("ds")[0]["action"] == "manual_promote"
    assert store.rollback_champion("ds", now=datetime(2026, 11, 4, tzinfo=UTC))["run_id"] == "r2"
    assert store.rollback_champion("ds", now=datetime(2026, 11, 5, tzinfo=UTC))["run_id"] == "r1"
    assert store.get_champion("ds")["model_key"] == "k1"
    with pytest.raises(StoreError, match="no previous champion"):
        store.rollback_champion("ds")
    with pytest.raises(StoreError):
        store.rollback_champion("unknown")


def test_minimal_run_record(store):
    assert store.create_minimal_run("x-1", RunStatus.FAILED, "bad input", dataset=None) is True
    rec = store.get_run("x-1")
    assert rec["status"] == "FAILED" and "dataset" not in rec and rec["history"][0]["note"] == "bad input"
