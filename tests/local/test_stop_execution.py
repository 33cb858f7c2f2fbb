"""`aws stepfunctions stop-execution` on a training run: job Stopped, run closed, budget released, Slack told.

Driven the way a user would: the dataset goes up with boto3, the execution is stopped with the `aws`
CLI (its own virtual environment, see the Makefile), the outcome is read from Slack and the CLI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import support

from yoloops.local import LocalStack, ScriptedTrainingBackend, complete
from yoloops.synth import generate_dataset

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = LocalStack(workdir=tmp_path_factory.mktemp("local"), training=ScriptedTrainingBackend())
    st.start()
    yield st
    st.stop()


def _aws(stack, *args: str) -> dict:
    out = support.aws_cli(stack, *args, "--output", "json", timeout=60)
    return json.loads(out) if out.strip() else {}


_wait = support.wait_for


def test_stop_execution_stops_the_job_closes_the_run_and_tells_slack(stack, tmp_path, monkeypatch):
    from yoloops_core.dataset.manifest import build_manifest

    root = tmp_path / "ds"
    generate_dataset(root, n_train=3, n_val=2, imgsz=64, seed=11)
    bucket, s3 = stack.outputs["ArtifactsBucketName"], stack.client("s3")
    stack.training.then(complete({"mAP50": 0.5, "mAP50-95": 0.3}, hold=True))  # trains until stopped
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"datasets/stopme/v1/{path.relative_to(root).as_posix()}")
    s3.put_object(Bucket=bucket, Key="datasets/stopme/v1/manifest.json",
                  Body=json.dumps(build_manifest(root, "stopme", "v1")).encode())

    job = _wait(lambda: next((j for j in stack.training.jobs.values() if j.secondary == "Training"), None),
                what="the training job to start")
    run_id = job.name.rsplit(f"-{stack.stack_code()}-a", 1)[0]
    sm_arn = stack.outputs["TrainingStateMachineArn"]
    execution_arn = sm_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"

    # A busy host: the execution's worker polls the job only every few seconds. StopExecution must still
    # return with the execution ABORTED, as on AWS (CI once read RUNNING right after the stop).
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback,
    )

    monkeypatch.setattr(state_task_service_callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK", 4.0)
    time.sleep(1.0)  # the worker is now in a long poll
    _aws(stack, "stepfunctions", "stop-execution", "--execution-arn", execution_arn,
         "--error", "UserStopped", "--cause", "stopped from the aws CLI")

    assert _aws(stack, "stepfunctions", "describe-execution", "--execution-arn", execution_arn)["status"] == "ABORTED"
    _wait(lambda: stack.training.jobs[job.name].status == "Stopped", what="the job to stop")
    transitions = [t["Status"] for t in stack.training.jobs[job.name].transitions]
    assert transitions[-2:] == ["Stopping", "Stopped"]  # SageMaker passes through Stopping
    described = _aws(stack, "sagemaker", "describe-training-job", "--training-job-name", job.name)
    assert described["TrainingJobStatus"] == "Stopped"

    def closed():
        stack.lambdas.wait_idle(5)
        rec = stack.client("dynamodb").get_item(TableName=stack.outputs["RunsTableName"],
                                                Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}})["Item"]
        return rec if rec["status"]["S"] == "FAILED" else None

    rec = _wait(closed, what="the run record to close")
    assert "aborted" in rec["failure_reason"]["S"]
    told = _wait(lambda: [m for m in stack.slack_messages if run_id in json.dumps(m) and "aborted" in json.dumps(m)],
                 what="Slack to be told")
    assert job.name in json.dumps(told[-1])  # the message names the stopped job
    # The reservation of the stopped attempt was settled: nothing of this run still holds budget.
    from yoloops_core.ledger import BudgetLedger

    ledger = BudgetLedger(stack.outputs["RunsTableName"], ddb=stack.client("dynamodb"))
    assert [r.state for r in ledger.reservations(run_id)] == ["settled"]
