"""`yoloops image probe` on the local stack: a real CreateTrainingJob of the entrypoint in probe mode, admitted
and settled by the budget gate, its report printed and recorded in S3 (issue 17)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from yoloops_core.ledger import BudgetLedger

from yoloops.cli import app
from yoloops.local import LocalStack, ProcessTrainingBackend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("probe")
    st = LocalStack(workdir=work / "stack", training=ProcessTrainingBackend(work / "training", checkpoint_sync_s=0.3),
                    parameters={"MonthlyBudgetUsd": "50"})
    st.start()
    yield st
    st.stop()


def _cli(stack, *args):
    return CliRunner().invoke(app, ["--local", str(stack.workdir), *args], catch_exceptions=False)


def test_probe_runs_the_image_as_a_local_job_and_records_what_it_found(stack):
    res = _cli(stack, "image", "probe", "--instance-type", "ml.g5.2xlarge", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)
    assert rec["status"] == "Completed" and rec["instance_type"] == "ml.g5.2xlarge"
    host = rec["host"]
    assert host["torch_version"] and host["arch_list"] and host["cpus"] >= 1 and host["ram_total_bytes"] > 0
    assert host["shm_bytes"] > 0 and host["checkpoints_mount_point"] is False
    job_dir = stack.training.job_dir(rec["job"])
    assert {d["path"] for d in host["disks"]} >= {str(job_dir / "checkpoints"), str(job_dir / "model")}
    assert rec["image_pull_s"] is not None and 0 <= rec["image_pull_s"] < 60
    assert rec["image"].endswith(":latest")  # the stack's image (TrainingImageTag)

    request = next(r for r in stack.training.requests if r["TrainingJobName"] == rec["job"])
    assert request["HyperParameters"] == {"yoloops_mode": "probe"}
    assert "EnableManagedSpotTraining" not in request  # on demand: spot could keep it waiting
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    bucket = stack.outputs["ArtifactsBucketName"]  # where the stack's SageMaker role may write already
    assert request["OutputDataConfig"]["S3OutputPath"] == f"s3://{bucket}/runs/{rec['job']}/output/"
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{bucket}/checkpoints/{rec['job']}/"

    s3 = stack.client("s3")
    stored = json.loads(s3.get_object(Bucket=stack.outputs["ArtifactsBucketName"], Key=rec["s3_key"])["Body"].read())
    assert stored["host"] == host and rec["s3_key"] == f"probes/{rec['job']}.json"

    # budget-gated like any attempt: reserved before the job, settled from its billed seconds after
    res_ = BudgetLedger(stack.outputs["RunsTableName"], stack.client("dynamodb")).reservation(rec["job"], 1)
    assert res_ is not None and res_.state != "reserved" and res_.instance_type == "ml.g5.2xlarge"
    assert res_.max_runtime_seconds <= 900

    text = _cli(stack, "image", "probe", "--instance-type", "ml.g5.xlarge")
    assert text.exit_code == 0, text.output
    assert "on ml.g5.xlarge: Completed" in text.output and "vCPUs" in text.output and "image pull" in text.output


def test_probe_is_refused_when_the_budget_cannot_buy_it(stack):
    # $1 a month buys ~95 s of an ml.p4d.24xlarge: less than MinRuntimeSeconds, so no job is created
    stack.reset({"MonthlyBudgetUsd": "1"})
    try:
        res = _cli(stack, "image", "probe", "--instance-type", "ml.p4d.24xlarge")
        assert res.exit_code == 1
        assert "budget gate refused the probe on ml.p4d.24xlarge" in res.output
        assert not [r for r in stack.training.requests if r["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge"]
    finally:
        stack.reset({"MonthlyBudgetUsd": "50"})
