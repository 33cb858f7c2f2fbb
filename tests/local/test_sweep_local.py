"""`yoloops sweep` on the local stack, really training: 4 jobs of the real training container, 2 at a time, each
settled from its own billing, the best one judged and promoted like any run. Slow (CPU training): marked `slow`."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from yoloops.cli import app
from yoloops.demo import start_local_stack
from yoloops.synth import generate_dataset

pytestmark = pytest.mark.slow
runner = CliRunner()
# One epoch of the shipped tiny model on 64 px shapes: seconds per job on a CPU.
HP = {"model": "yoloops-tiny.yaml", "epochs": "1", "imgsz": "64", "batch": "8", "workers": "0",
      "warmup_epochs": "0", "mosaic": "0", "optimizer": "SGD"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = start_local_stack(tmp_path_factory.mktemp("sweep"), hyperparameters=HP, checkpoint_sync_s=0.5,
                           parameters={"UploadQuietSeconds": "900"})
    yield st
    st.stop()


def cli(stack, *args):
    return runner.invoke(app, ["--local", str(stack.workdir), *args], catch_exceptions=False)


def test_sweep_of_four_jobs_two_at_a_time_trains_settles_and_judges_the_best(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint_url)
    root = tmp_path / "shapes"
    generate_dataset(root, n_train=24, n_val=8, imgsz=64, seed=4)
    pushed = cli(stack, "dataset", "push", str(root), "--name", "swp", "--version", "v1", "--wait", "--json")
    assert pushed.exit_code == 0, pushed.output  # the version's own run: validated, trained once

    started = cli(stack, "sweep", "swp@v1", "--param", "lr0=0.001..0.05:log", "--param", "imgsz=64,96",
                  "--max-jobs", "4", "--parallel", "2", "--strategy", "random", "--json")
    assert started.exit_code == 0, started.output
    body = json.loads(started.stdout)
    run_id = body["run_id"]
    assert body["input"]["sweep"]["max_jobs"] == 4  # the documented start-execution input

    desc = stack.wait_for_execution(body["execution_arn"], timeout=600)
    assert desc["status"] == "SUCCEEDED", stack.slack_messages[-2:]
    [tuning] = stack.tuner.jobs.values()
    jobs = [stack.training.describe_training_job(n) for n in tuning.training_jobs]
    assert len(jobs) == 4 and all(j["TrainingJobStatus"] == "Completed" for j in jobs)
    # Really trained: each job's own metrics, model archive and checkpoints under its own prefix.
    s3, bucket = stack.client("s3"), stack.outputs["ArtifactsBucketName"]
    for j in jobs:
        assert {m["MetricName"] for m in j["FinalMetricDataList"]} >= {"mAP50", "mAP50-95"}
        assert j["ModelArtifacts"]["S3ModelArtifacts"].endswith(f"/{j['TrainingJobName']}/output/model.tar.gz")
        prefix = f"checkpoints/{run_id}/{j['TrainingJobName']}/"
        assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) > 0, prefix
    # Never more than 2 at a time, and 2 did overlap.
    spans = [(j["TrainingStartTime"], j["TrainingEndTime"]) for j in jobs]
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert overlap == 2

    from yoloops_core.ledger import BudgetLedger
    from yoloops_core.store import RunStore

    table, ddb = stack.outputs["RunsTableName"], stack.client("dynamodb")
    reservations = BudgetLedger(table, ddb=ddb).reservations(run_id)
    assert len(reservations) == 4 and all(r.state == "settled" for r in reservations)
    assert sorted(r.billable_seconds for r in reservations) == sorted(float(j["BillableTimeInSeconds"]) for j in jobs)
    record = RunStore(table, ddb=ddb).get_run(run_id)
    assert record["status"] in ("PROMOTED", "KEPT")
    best = max(jobs, key=lambda j: next(m["Value"] for m in j["FinalMetricDataList"] if m["MetricName"] == "mAP50-95"))
    assert record["current_job"] == best["TrainingJobName"]
    texts = [json.dumps(m) for m in stack.slack_messages]
    assert any(run_id in t and "Sweep leaderboard" in t and "(best)" in t for t in texts)
    deadline = time.monotonic() + 10
    while not any(run_id in t and ("New champion" in t or "Champion kept" in t) for t in texts):
        assert time.monotonic() < deadline
        time.sleep(0.2)
        texts = [json.dumps(m) for m in stack.slack_messages]
