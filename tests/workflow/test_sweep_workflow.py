"""statemachine/sweep.asl.json on the local stack with scripted training jobs: the budget reserves N x one job's
worst case before the tuning job exists, each job is settled, the best job goes through the verdict."""

from __future__ import annotations

import json
import threading
import time

import pytest

from yoloops.local import complete

OBJECTIVES = [0.41, 0.66, 0.52, 0.30]


def _start(wf, run_id, max_jobs=4, parallel=2, **extra):
    from yoloops_core.sweep import SweepSpec, parse_param

    spec = SweepSpec(params=[parse_param("lr0=1e-4..1e-2:log"), parse_param("imgsz=512,640,768")],
                     max_jobs=max_jobs, parallel=parallel, strategy="random")
    body = {"request": {"dataset": {"name": "shapes", "version": "v1", "format": "dir"},
                        "trigger": {"source": "cli", "ref": "tests/workflow sweep"}, **extra},
            "sweep": spec.model_dump(mode="json")}
    arn = wf.stack.outputs["SweepStateMachineArn"]
    return wf.sfn.start_execution(stateMachineArn=arn, name=run_id, input=json.dumps(body))["executionArn"]


def test_a_sweep_reserves_every_job_first_settles_each_and_promotes_the_best(wf):
    wf.upload_dataset("shapes", "v1")
    wf.training.then(*[complete({"mAP50": v + 0.1, "mAP50-95": v}, duration_s=0.3) for v in OBJECTIVES])
    running, peak, lock = set(), [0], threading.Lock()
    original = wf.training._transition

    def spy(job, status, secondary, message):  # the most jobs training at once
        with lock:
            (running.add if status == "InProgress" else running.discard)(job.name)
            peak[0] = max(peak[0], len(running))
        return original(job, status, secondary, message)

    wf.training._transition = spy
    run_id = "sw-shapes-v1-0000aaaa"
    try:
        desc = wf.wait(_start(wf, run_id), timeout=90)
    finally:
        wf.training._transition = original
    assert desc["status"] == "SUCCEEDED", wf.history(desc["executionArn"])[-3:]
    states = wf.states_entered(desc["executionArn"])
    assert states == ["ValidateDataset", "Prepared", "IsDatasetValid", "ReserveSweep", "IsAdmitted", "Tune",
                      "PickBest", "Evaluate", "IsBetter", "Promote", "Notify", "Done"]

    [tuning] = wf.stack.tuner.jobs.values()
    assert len(tuning.name) <= 32 and tuning.name.startswith("sw-shapes-")
    requests = [r for r in wf.training.requests if r["TrainingJobName"].startswith(tuning.name)]
    assert len(requests) == 4 and peak[0] == 2
    for r in requests:
        hp = r["HyperParameters"]
        assert hp["_tuning_objective_metric"] == "mAP50-95"
        assert 1e-4 <= float(hp["lr0"]) <= 1e-2 and hp["imgsz"] in {"512", "640", "768"}
        assert r["EnableManagedSpotTraining"] is True
        assert r["CheckpointConfig"]["S3Uri"] == f"s3://{wf.bucket}/checkpoints/{run_id}/{r['TrainingJobName']}/"
    by_name = {j: wf.training.jobs[j].final_metrics["mAP50-95"] for j in tuning.training_jobs}
    best = max(by_name, key=by_name.get)
    assert by_name[best] == pytest.approx(max(OBJECTIVES))

    # The best job is the run's model: promoted through the same verdict as any run.
    champion = wf.champion("shapes")
    assert champion["run_id"] == run_id and champion["metric_value"] == pytest.approx(max(OBJECTIVES))
    record = wf.run_record(run_id)
    assert record["status"] == "PROMOTED" and record["current_job"] == best
    assert [row["job_name"] for row in record["leaderboard"]] == tuning.training_jobs

    # Four reservations of one job's worst case, each settled from its own job's billing; nothing held.
    reservations = wf.ledger().reservations(run_id)
    assert [r.attempt for r in reservations] == [1, 2, 3, 4]
    assert all(r.state == "settled" and r.billable_seconds >= 1 for r in reservations)
    assert len({r.amount_usd for r in reservations}) == 1
    # Each job's own end event settled its reservation as it ended (TrainingEvents), before the tuning job ended.
    settled_on_end = [i.result for i in wf.stack.lambdas.invocations
                      if "TrainingEventsFunction" in i.function and "reservation" in str((i.result or {}).get("reason"))]
    assert len(settled_on_end) == 4, settled_on_end
    assert wf.ledger().totals(record["month"]).reserved_usd == pytest.approx(0.0)

    started = wf.wait_for_slack(run_id, "Sweep started", "4 jobs, 2 at a time", "4 x $")
    assert "lr0 1e-4..1e-2 (log)" in started and "imgsz in {512, 640, 768}" in started
    board = wf.wait_for_slack(run_id, "Sweep leaderboard", "(best)")
    assert board.index(f"{max(OBJECTIVES):.4f}") < board.index(f"{min(OBJECTIVES):.4f}")
    wf.wait_for_slack(run_id, "New champion promoted")


def test_a_sweep_that_does_not_fit_the_budget_creates_no_tuning_job(wf):
    wf.reset(MonthlyBudgetUsd="3")  # one job's worst case is $1.41 on ml.g5.xlarge: 2 fit, 4 do not
    wf.upload_dataset("shapes", "v1")
    run_id = "sw-shapes-v1-0000bbbb"
    desc = wf.wait(_start(wf, run_id), timeout=60)
    assert desc["status"] == "FAILED"
    assert wf.states_entered(desc["executionArn"])[-3:] == ["IsAdmitted", "NotifyBudgetBlocked", "BudgetExceeded"]
    assert wf.stack.tuner.jobs == {} and wf.training.requests == []
    assert wf.run_record(run_id)["status"] == "BUDGET_BLOCKED"
    assert all(r.state == "settled" and r.actual_usd == 0 for r in wf.ledger().reservations(run_id))
    wf.wait_for_slack(run_id, "blocked by the budget gate", "4 jobs x worst case")


def test_with_require_approval_a_sweep_waits_with_its_whole_worst_case_and_a_reject_releases_it(wf):
    from yoloops_core.approval import ApprovalStore

    wf.reset(RequireApproval="train")
    wf.upload_dataset("shapes", "v1")
    run_id = "sw-shapes-v1-0000cccc"
    arn = _start(wf, run_id)
    deadline = time.monotonic() + 30
    while (ApprovalStore(wf.table, ddb=wf.ddb).get(run_id, "train") or {}).get("status") != "pending":
        assert time.monotonic() < deadline and wf.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        time.sleep(0.1)
    held = wf.ledger().reservations(run_id)
    assert len(held) == 4 and all(r.state == "reserved" for r in held) and wf.stack.tuner.jobs == {}
    total = sum(r.amount_usd for r in held)
    wf.wait_for_slack(run_id, "Approval needed", f"${total:.2f} reserved", "yoloops_approve")

    from yoloops_core.approval import decide
    from yoloops_core.store import RunStore

    decide(run_id, False, "tests", approvals=ApprovalStore(wf.table, ddb=wf.ddb), store=RunStore(wf.table, ddb=wf.ddb),
           sfn=wf.sfn, reason="not this week")
    desc = wf.wait(arn)
    assert desc["status"] == "FAILED" and wf.states_entered(arn)[-3:] == ["TrainNotApproved", "NotifyNotApproved",
                                                                         "NotApproved"]
    assert wf.stack.tuner.jobs == {} and wf.run_record(run_id)["status"] == "NOT_APPROVED"
    assert all(r.state == "settled" and r.actual_usd == 0 for r in wf.ledger().reservations(run_id))


def test_a_sweep_stopped_mid_tuning_stops_its_jobs_settles_what_ran_and_releases_the_rest(wf):
    wf.upload_dataset("shapes", "v1")
    wf.training.then(*[complete({"mAP50": 0.5, "mAP50-95": 0.4}, hold=True) for _ in range(4)])
    run_id = "sw-shapes-v1-0000dddd"
    arn = _start(wf, run_id)
    deadline = time.monotonic() + 30
    while sum(j.secondary == "Training" for j in wf.training.jobs.values()) < 2:
        assert time.monotonic() < deadline, wf.history(arn)[-2:]
        time.sleep(0.1)
    wf.sfn.stop_execution(executionArn=arn, error="Cancelled", cause="a person stopped the sweep")

    # As on AWS, stopping the execution stops its tuning job: no third job, the two running ones Stopped.
    [tuning] = wf.stack.tuner.jobs.values()
    assert tuning.done.wait(20) and tuning.status == "Stopped"
    assert [wf.training.jobs[n].status for n in tuning.training_jobs] == ["Stopped", "Stopped"]
    deadline = time.monotonic() + 20
    while any(r.state != "settled" for r in wf.ledger().reservations(run_id)):
        assert time.monotonic() < deadline, wf.ledger().reservations(run_id)
        time.sleep(0.2)
    by_slot = {r.attempt: r for r in wf.ledger().reservations(run_id)}
    assert by_slot[1].billable_seconds >= 1 and by_slot[2].billable_seconds >= 1  # what ran is paid for
    assert by_slot[3].actual_usd == 0 and by_slot[4].actual_usd == 0  # never started: released
    wf.stack.lambdas.wait_idle(10)
    assert wf.run_record(run_id)["status"] == "FAILED"  # Reconcile closed it
