"""A run trains exactly the data it validated (issue 18, item 4), with the real container as a local job:
an object rewritten between ValidateDataset and the job's download fails the run before epoch 1 with
"dataset changed after validation", naming the file.

Slow-ish (the container starts as a process; it stops before Ultralytics trains): marked `slow`.
"""

from __future__ import annotations

import json
import time

import pytest

from yoloops.local import LocalStack, ProcessTrainingBackend
from yoloops.synth import generate_dataset

pytestmark = pytest.mark.slow

HP = {"model": "yolo11n.yaml", "epochs": "1", "imgsz": "64", "batch": "4", "workers": "0"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("changed")
    st = LocalStack(workdir=work / "stack", training=ProcessTrainingBackend(work / "training"),
                    parameters={"UploadQuietSeconds": "900"})
    st.start()
    yield st
    st.stop()


def test_a_label_rewritten_after_validation_fails_the_run_before_training(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint_url)
    root = tmp_path / "ds"
    generate_dataset(root, n_train=6, n_val=2, imgsz=64, seed=5)
    s3, sfn = stack.client("s3"), stack.client("stepfunctions")
    bucket = stack.outputs["ArtifactsBucketName"]
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        s3.upload_file(str(path), bucket, f"datasets/changed/v1/{path.relative_to(root).as_posix()}")
    run_id = "ds-changed-v1"
    gate = stack.lambdas.hold(lambda spec, event: spec.logical_id == "CheckBudgetFunction" and run_id in json.dumps(event))
    arn = sfn.start_execution(stateMachineArn=stack.outputs["TrainingStateMachineArn"], name=run_id,
                              input=json.dumps({"dataset": {"name": "changed", "version": "v1"},
                                                "trigger": {"source": "manual", "ref": "tests/local"},
                                                "hyperparameters": HP}))["executionArn"]
    deadline = time.monotonic() + 60
    while not s3.list_objects_v2(Bucket=bucket, Prefix=f"runs/{run_id}/input/train.manifest").get("KeyCount"):
        assert time.monotonic() < deadline, "ValidateDataset wrote no snapshot"
        time.sleep(0.1)
    # Validated; before the job downloads it, one label is rewritten (same size, other bytes).
    label = next(p for p in files if p.suffix == ".txt" and p.stat().st_size > 0)
    rel = label.relative_to(root).as_posix()
    body = label.read_bytes()
    changed = body.replace(b"0", b"1", 1) if b"0" in body else body.replace(b".", b",", 1)
    assert changed != body and len(changed) == len(body)
    s3.put_object(Bucket=bucket, Key=f"datasets/changed/v1/{rel}", Body=changed)
    gate.set()

    result = stack.wait_for_execution(arn, timeout=300)
    assert result["status"] == "FAILED"
    record = stack.client("dynamodb").get_item(TableName=stack.outputs["RunsTableName"],
                                               Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}})["Item"]
    reason = record["failure_reason"]["S"]
    assert "dataset changed after validation" in reason and f"{rel}: content differs" in reason
    assert int(record["attempts"]["N"]) == 1  # not retried: the same snapshot would fail again
