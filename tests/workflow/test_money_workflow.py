"""Every dollar accounted, on the real ASL executed by moto with the real handlers (issue 18, item 5).

A job that ran is billed in the ledger from DescribeTrainingJob's BillableTimeInSeconds, whatever a later
step did; a stopped run's hold is released by its job's own state-change event, not at the next sweep.
"""

from __future__ import annotations

import time

import pytest

from yoloops.local import Outcome

GOOD = {"mAP50": 0.81, "mAP50-95": 0.62, "precision": 0.8, "recall": 0.75}
PRICE = 2.0  # HourlyPriceOverrideUsd of these tests


def _until(predicate, timeout: float, what: str, wf=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if wf is not None:
            wf.stack.lambdas.wait_idle(0.5)
        time.sleep(0.05)
    raise AssertionError(f"timed out ({timeout} s) waiting for {what}")


def test_job_completed_then_evaluate_failed_the_cost_is_in_the_ledger(wf):
    wf.reset(HourlyPriceOverrideUsd=str(PRICE), MonthlyBudgetUsd="10")
    wf.upload_dataset("shapes", "v1")
    # The job completes and bills 30 minutes, but reports no mAP50-95 anywhere: Evaluate fails.
    wf.training.then(Outcome("complete", metrics={"mAP50": 0.5}, billable_s=1800, training_s=2400))
    arn = wf.start("shapes", "v1")
    result = wf.wait(arn)
    run_id = wf.run_id("shapes", "v1")

    assert result["status"] == "FAILED"
    states = wf.states_entered(arn)
    assert "Evaluate" in states and states[-2:] == ["NotifyFailure", "RunFailed"]
    assert "Promote" not in states
    ledger = wf.ledger()
    [res] = ledger.reservations(run_id)
    assert res.state == "settled"
    assert res.billable_seconds == pytest.approx(1800)
    assert res.actual_usd == pytest.approx(PRICE * 1800 / 3600)  # $1.00, not $0
    totals = ledger.totals(res.month)
    assert totals.spent_usd == pytest.approx(1.0)
    assert totals.reserved_usd == pytest.approx(0.0)
    record = wf.run_record(run_id)
    assert record["status"] == "FAILED"
    assert float(record["cost_usd"]) == pytest.approx(1.0)
    assert wf.wait_for_slack(run_id, "$1.00")


def test_stopped_run_releases_its_hold_on_the_jobs_own_end_event_not_the_sweep(wf):
    # The probe: $10/h, MaxRuntime 360 s -> $1.00 held of a $1.50 budget.
    wf.reset(HourlyPriceOverrideUsd="10", MaxRuntimeSeconds="360", MinRuntimeSeconds="60", MonthlyBudgetUsd="1.5")
    wf.upload_dataset("shapes", "v1")
    # Trains until stopped; StopTrainingJob leaves it Stopping for 6 s (SIGTERM grace; long enough that the run
    # closes first on a loaded machine too), billed 72 s.
    wf.training.then(Outcome("complete", metrics=GOOD, hold=True, stopping_s=6.0, billable_s=72))
    arn = wf.start("shapes", "v1")
    run_id = wf.run_id("shapes", "v1")
    job = wf.stack.job_name(run_id)
    _until(lambda: job in wf.training.jobs and wf.training.jobs[job].secondary == "Training", 30, "training")
    ledger = wf.ledger()
    [held] = ledger.reservations(run_id)
    assert held.state == "reserved" and held.amount_usd == pytest.approx(1.0)

    wf.sfn.stop_execution(executionArn=arn, error="UserStopped", cause="stopped by the team")
    # Reconcile closes the run while SageMaker is still stopping the job: it cannot settle yet.
    _until(lambda: wf.run_record(run_id).get("status") == "FAILED", 20, "the run to close", wf)
    assert wf.training.jobs[job].status == "Stopping"
    assert ledger.reservations(run_id)[0].state == "reserved"

    _until(lambda: wf.training.jobs[job].status == "Stopped", 20, "the job to stop")
    stopped_at = time.monotonic()
    settled = _until(lambda: (r := ledger.reservations(run_id)[0]).state == "settled" and r, 20,
                     "the reservation to settle", wf)
    assert time.monotonic() - stopped_at < 60  # within a minute of the job's end
    assert settled.actual_usd == pytest.approx(10 * 72 / 3600)  # $0.20 billed, $0.80 released
    assert ledger.totals(settled.month).reserved_usd == pytest.approx(0.0)
    # No sweep did it: the watchdog never ran; the job's own state-change event settled it.
    assert not any(i.function.endswith("WatchdogFunction") for i in wf.stack.lambdas.invocations)
    # The local Lambda runtime records an invocation when its handler returns, just after the settle it made.
    _until(lambda: any(i.function.endswith("TrainingEventsFunction") and '"Stopped"' in str(i.event).replace("'", '"')
                       for i in wf.stack.lambdas.invocations), 10, "the training-events invocation", wf)
    # The run's cost follows, and the next upload is admitted with the $1.30 left.
    _until(lambda: float(wf.run_record(run_id).get("cost_usd") or 0) == pytest.approx(0.2), 10, "the cost", wf)
