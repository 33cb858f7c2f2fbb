"""The real statemachine/training.asl.json, executed by moto with the real handlers in-process.

SageMaker is the only stand-in: ScriptedTrainingBackend decides each job's outcome, and the
`.sync` adaptation gives the ASL exactly what AWS gives it (DescribeTrainingJob on success;
States.TaskFailed + DescribeTrainingJob Cause, or SageMaker.<Code>Exception / SageMaker.AmazonSageMakerException
at create, code in the Cause, on failure).
"""

from __future__ import annotations

import json
import time

import pytest

from yoloops.local import capacity_error, complete, fail, spot_max_wait_exceeded

GOOD = {"mAP50": 0.81, "mAP50-95": 0.62, "precision": 0.8, "recall": 0.75}
WORSE = {"mAP50": 0.70, "mAP50-95": 0.41, "precision": 0.7, "recall": 0.6}
BETTER = {"mAP50": 0.90, "mAP50-95": 0.74, "precision": 0.9, "recall": 0.85}


def _run(wf, name, version, *outcomes, timeout=60):
    wf.upload_dataset(name, version)
    wf.training.then(*outcomes)
    arn = wf.start(name, version)
    return arn, wf.wait(arn, timeout=timeout)


def test_first_model_is_promoted_to_champion(wf):
    arn, result = _run(wf, "shapes", "v1", complete(GOOD))
    run_id = wf.run_id("shapes", "v1")
    job = wf.stack.job_name(run_id)  # <run id>-<stack code>-a1

    assert result["status"] == "SUCCEEDED", wf.history(arn)[-3:]
    assert wf.states_entered(arn) == ["ValidateDataset", "IsDatasetValid", "FirstAttempt", "CheckBudget",
                                      "IsAdmitted", "Train", "Evaluate", "IsBetter", "Promote", "Notify", "Done"]
    [request] = wf.training.requests
    assert request["TrainingJobName"] == job and job.startswith(run_id)
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{wf.bucket}/checkpoints/{run_id}/"
    assert all(isinstance(v, str) for v in request["HyperParameters"].values())

    champion = wf.champion("shapes")
    assert champion["run_id"] == run_id
    assert champion["metric_value"] == pytest.approx(GOOD["mAP50-95"])
    assert "models/shapes/champion/best.pt" in wf.keys("models/shapes/champion/")
    assert f"models/shapes/versions/{run_id}/best.pt" in wf.keys(f"models/shapes/versions/{run_id}/")
    body = wf.s3.get_object(Bucket=wf.bucket, Key="models/shapes/champion/best.pt")["Body"].read()
    assert body == f"yoloops-scripted-weights:{job}".encode()  # the job's own best.pt, not a copy of nothing

    # The CLI and the aws CLI see the job through the SageMaker API on the local endpoint.
    sm = wf.stack.client("sagemaker")
    described = sm.describe_training_job(TrainingJobName=job)
    assert described["TrainingJobStatus"] == "Completed"
    assert described["ModelArtifacts"]["S3ModelArtifacts"].endswith(f"/{job}/output/model.tar.gz")
    assert [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]] == [job]

    record = wf.run_record(run_id)
    assert record["status"] == "PROMOTED"
    assert record["metrics"]["mAP50-95"] == pytest.approx(0.62)
    assert wf.wait_for_slack(run_id, "New champion promoted", "0.6200")


def test_worse_challenger_keeps_the_champion(wf):
    _, first = _run(wf, "shapes", "v1", complete(GOOD))
    assert first["status"] == "SUCCEEDED"
    arn, second = _run(wf, "shapes", "v2", complete(WORSE))

    assert second["status"] == "SUCCEEDED"
    assert "KeepChampion" in wf.states_entered(arn) and "Promote" not in wf.states_entered(arn)
    assert wf.champion("shapes")["run_id"] == wf.run_id("shapes", "v1")
    # No bundle for a kept model; its verdict is there (scripted jobs score no champion: not like-for-like).
    v2 = wf.run_id("shapes", "v2")
    assert wf.keys(f"models/shapes/versions/{v2}/") == [f"models/shapes/versions/{v2}/verdict.json"]
    verdict = json.loads(wf.s3.get_object(Bucket=wf.bucket, Key=f"models/shapes/versions/{v2}/verdict.json")["Body"].read())
    assert verdict["basis"] == "recorded" and verdict["compared_with"] == wf.run_id("shapes", "v1")
    assert wf.run_record(wf.run_id("shapes", "v2"))["status"] == "KEPT"
    # The champion-kept message reports the change against the champion.
    assert wf.wait_for_slack(wf.run_id("shapes", "v2"), "Champion kept", "-0.2100")


def test_failed_training_is_notified_with_its_failure_reason(wf):
    reason = "AlgorithmError: CUDA out of memory. Tried to allocate 2.00 GiB"
    arn, result = _run(wf, "shapes", "v1", fail(reason))

    assert result["status"] == "FAILED"
    states = wf.states_entered(arn)
    assert states[-4:] == ["AttemptFailed", "ShouldRetry", "NotifyFailure", "RunFailed"]
    assert states.count("Train") == 1  # an algorithm error is not retried
    record = wf.run_record(wf.run_id("shapes", "v1"))
    assert record["status"] == "FAILED"
    assert "CUDA out of memory" in record["failure_reason"]
    assert wf.wait_for_slack(wf.run_id("shapes", "v1"), "Training failed", "CUDA out of memory")
    assert wf.champion("shapes") is None


def test_capacity_and_spot_failures_retry_with_new_jobs_on_one_checkpoint_prefix(wf):
    arn, result = _run(
        wf, "shapes", "v1",
        spot_max_wait_exceeded(),
        fail("CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML instance type."),
        complete(GOOD),
    )

    assert result["status"] == "SUCCEEDED", wf.history(arn)[-3:]
    names = [r["TrainingJobName"] for r in wf.training.requests]
    assert names == [wf.stack.job_name(wf.run_id('shapes', 'v1'), n) for n in (1, 2, 3)]
    prefixes = {r["CheckpointConfig"]["S3Uri"] for r in wf.training.requests}
    assert prefixes == {f"s3://{wf.bucket}/checkpoints/{wf.run_id('shapes', 'v1')}/"}
    # Both retries pass the backoff Wait; only the capacity error waits (MaxWait already waited).
    waits = [e for e in wf.history(arn) if e["type"] == "WaitStateEntered"]
    assert [json.loads(e["stateEnteredEventDetails"]["input"])["gate"]["attempt"]["backoff_seconds"]
            for e in waits] == [0, 2]
    record = wf.run_record(wf.run_id("shapes", "v1"))
    assert int(record["attempts"]) == 3
    assert record["job_names"] == names
    assert record["status"] == "PROMOTED"
    # Every attempt passed the budget gate; after two spot-related failures the third ran on-demand.
    assert wf.states_entered(arn).count("CheckBudget") == 3
    assert [r["EnableManagedSpotTraining"] for r in wf.training.requests] == [True, True, False]
    assert "MaxWaitTimeInSeconds" not in wf.training.requests[2]["StoppingCondition"]
    assert wf.wait_for_slack("training.retry", "on-demand (after 2 spot failures)")
    ledger = wf.ledger()
    assert [r.state for r in ledger.reservations(wf.run_id("shapes", "v1"))] == ["settled"] * 3
    assert ledger.totals(record["month"]).reserved_usd == pytest.approx(0.0)


def test_quota_error_at_create_is_a_sagemaker_error_and_fails_the_run(wf):
    arn, result = _run(wf, "shapes", "v1", capacity_error())

    assert result["status"] == "FAILED"
    failed = [e for e in wf.history(arn) if e["type"] == "TaskFailed"]
    # As AWS names it: the SDK exception class; the bare code is only in the Cause.
    assert failed[0]["taskFailedEventDetails"]["error"] == "SageMaker.ResourceLimitExceededException"
    assert "Error Code: ResourceLimitExceeded" in failed[0]["taskFailedEventDetails"]["cause"]
    record = wf.run_record(wf.run_id("shapes", "v1"))
    assert record["status"] == "FAILED"
    assert "ResourceLimitExceeded" in record["failure_reason"]


def test_budget_blocked_run_creates_no_training_job(wf):
    wf.reset(MonthlyBudgetUsd="1", MinRuntimeSeconds="3600")  # $1 buys 2556 s of the hour: no clamp allowed
    arn, result = _run(wf, "shapes", "v1", complete(GOOD))

    assert result["status"] == "FAILED"
    assert "NotifyBudgetBlocked" in wf.states_entered(arn)
    assert wf.training.requests == []
    assert wf.run_record(wf.run_id("shapes", "v1"))["status"] == "BUDGET_BLOCKED"
    assert wf.wait_for_slack(wf.run_id("shapes", "v1"), "Run blocked by budget", "less than MinRuntimeSeconds")
    assert json.loads(wf.sfn.describe_execution(executionArn=arn).get("output") or "null") is None


def test_out_of_order_finish_leaves_the_better_model_champion(wf):
    # v2 (better) finishes first, v1 (worse) finishes later: v1 must not replace v2.
    wf.upload_dataset("shapes", "v1")
    wf.upload_dataset("shapes", "v2")
    wf.training.script(wf.stack.job_name(wf.run_id('shapes', 'v1')), complete(WORSE, hold=True))
    wf.training.script(wf.stack.job_name(wf.run_id('shapes', 'v2')), complete(BETTER))
    slow = wf.start("shapes", "v1")
    fast = wf.start("shapes", "v2")
    assert wf.wait(fast)["status"] == "SUCCEEDED"
    assert wf.champion("shapes")["run_id"] == wf.run_id("shapes", "v2")
    wf.training.release(wf.stack.job_name(wf.run_id('shapes', 'v1')))
    assert wf.wait(slow)["status"] == "SUCCEEDED"

    champion = wf.champion("shapes")
    assert champion["run_id"] == wf.run_id("shapes", "v2")
    assert champion["metric_value"] == pytest.approx(BETTER["mAP50-95"])
    assert wf.run_record(wf.run_id("shapes", "v1"))["status"] == "KEPT"
    meta = json.loads(wf.s3.get_object(Bucket=wf.bucket, Key="models/shapes/champion/metrics.json")["Body"].read())
    assert json.dumps(meta).find("0.74") >= 0


def test_promotion_race_the_better_model_wins_the_conditional_write(wf):
    # Both runs evaluate against "no champion" (both look better); the worse one's Promote is held
    # until the better one has promoted: its conditional write must lose, files and record untouched.
    wf.upload_dataset("shapes", "v1")
    wf.upload_dataset("shapes", "v2")
    wf.training.script(wf.stack.job_name(wf.run_id('shapes', 'v1')), complete(WORSE))
    wf.training.script(wf.stack.job_name(wf.run_id('shapes', 'v2')), complete(BETTER, hold=True))
    v1 = wf.run_id("shapes", "v1")
    promote_v1 = wf.stack.lambdas.hold(
        lambda spec, event: spec.logical_id == "PromoteFunction" and v1 in json.dumps(event))
    slow = wf.start("shapes", "v1")
    fast = wf.start("shapes", "v2")
    deadline = time.monotonic() + 30  # v1 has evaluated (better than nothing) and waits at Promote
    while not any(i.function.endswith("EvaluateFunction") and wf.run_id("shapes", "v1") in json.dumps(i.event)
                  for i in wf.stack.lambdas.invocations):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    wf.training.release(wf.stack.job_name(wf.run_id('shapes', 'v2')))
    assert wf.wait(fast)["status"] == "SUCCEEDED"
    promote_v1.set()
    assert wf.wait(slow)["status"] == "SUCCEEDED"

    assert "Promote" in wf.states_entered(slow)  # it really tried
    champion = wf.champion("shapes")
    assert champion["run_id"] == wf.run_id("shapes", "v2")
    best = wf.s3.get_object(Bucket=wf.bucket, Key="models/shapes/champion/best.pt")["Body"].read()
    assert best == f"yoloops-scripted-weights:{wf.stack.job_name(wf.run_id('shapes', 'v2'))}".encode()
    assert wf.run_record(wf.run_id("shapes", "v2"))["status"] == "PROMOTED"
    assert wf.run_record(wf.run_id("shapes", "v1"))["status"] != "PROMOTED"


def test_malformed_input_fails_at_the_first_state_naming_the_field_and_notifies(wf):
    arn = wf.start("shapes", "v1", run_id="bad-input-1",
                   request={"dataset": {"name": "shapes"}, "trigger": {"source": "manual", "ref": "x"}})
    result = wf.wait(arn)

    assert result["status"] == "FAILED"
    assert wf.states_entered(arn) == ["ValidateDataset", "NotifyFailure", "RunFailed"]
    failed = next(e for e in wf.history(arn) if e["type"] == "TaskFailed")
    details = failed["taskFailedEventDetails"]
    assert details["error"] == "InvalidInput"
    cause = json.loads(details["cause"])
    assert cause["errorType"] == "InvalidInput" and "dataset.version" in cause["errorMessage"]
    assert wf.training.requests == []
    assert "dataset.version" in wf.wait_for_slack("bad-input-1")


def test_happy_path_stays_within_25_state_transitions(wf):
    arn, result = _run(wf, "shapes", "v1", complete(GOOD))
    assert result["status"] == "SUCCEEDED"
    assert wf.transitions(arn) <= 25


def test_a_retry_the_budget_no_longer_covers_ends_the_run_with_checkpoints_kept(wf):
    # $1.408/h x 1 h worst case (ml.g5.xlarge), budget $2, no clamp: attempt 1 fits, bills 3000 s
    # ($1.17) and fails for lack of spot capacity; the retry's $1.408 no longer fits the $0.83 left.
    wf.reset(MonthlyBudgetUsd="2", MaxRuntimeSeconds="3600", MinRuntimeSeconds="3600")
    arn, result = _run(wf, "shapes", "v1", spot_max_wait_exceeded(billable_seconds=3000), complete(GOOD))

    assert result["status"] == "FAILED"
    states = wf.states_entered(arn)
    assert states.count("Train") == 1 and states.count("CheckBudget") == 2
    assert states[-3:] == ["IsAdmitted", "NotifyFailure", "RunFailed"]
    assert len(wf.training.requests) == 1  # no second job was ever created
    run_id = wf.run_id("shapes", "v1")
    record = wf.run_record(run_id)
    assert record["status"] == "FAILED" and "budget stopped retries" in record["failure_reason"]
    assert f"checkpoints/{run_id}/" in record["failure_reason"]
    assert wf.wait_for_slack(run_id, "budget stopped retries")
    assert [r.state for r in wf.ledger().reservations(run_id)] == ["settled"]
