"""The real training_container/train.py as a local SageMaker job, including a spot interruption.

Slow (trains YOLO on the CPU for a few seconds): marked `slow`.
"""

from __future__ import annotations

import io
import json
import tarfile
import time

import pytest

from yoloops.local import LocalStack, ProcessTrainingBackend
from yoloops.synth import generate_dataset

pytestmark = pytest.mark.slow

HP = {"model": "yolo11n.yaml", "epochs": "5", "imgsz": "64", "batch": "8", "workers": "0",
      "warmup_epochs": "0", "mosaic": "0", "patience": "100"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("proc")
    # The test starts its execution itself: the upload must not close by quiet into a second run.
    st = LocalStack(workdir=work / "stack", training=ProcessTrainingBackend(work / "training", checkpoint_sync_s=0.3),
                    parameters={"UploadQuietSeconds": "900"})
    st.start()
    yield st
    st.stop()


def test_local_job_trains_is_interrupted_resumes_and_is_promoted(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint_url)
    root = tmp_path / "shapes"
    generate_dataset(root, n_train=96, n_val=8, imgsz=64, seed=2)
    s3, sfn = stack.client("s3"), stack.client("stepfunctions")
    bucket = stack.outputs["ArtifactsBucketName"]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"datasets/proc/v1/{path.relative_to(root).as_posix()}")
    arn = sfn.start_execution(
        stateMachineArn=stack.outputs["TrainingStateMachineArn"], name="ds-proc-v1",
        input=json.dumps({"dataset": {"name": "proc", "version": "v1"},
                          "trigger": {"source": "manual", "ref": "tests/local"}, "hyperparameters": HP}),
    )["executionArn"]
    job = stack.job_name("ds-proc-v1")  # <run id>-<stack code>-a1

    # Interrupt once the first checkpoint is safe in S3 (what managed spot resumes from).
    deadline = time.monotonic() + 240
    while True:
        assert time.monotonic() < deadline, "no checkpoint reached S3"
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="checkpoints/ds-proc-v1/").get("Contents", [])
        if any(o["Key"].endswith("/last.pt") for o in listed):
            break
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        time.sleep(0.2)
    stack.interrupt(job)

    result = stack.wait_for_execution(arn, timeout=300)
    assert result["status"] == "SUCCEEDED"

    desc = stack.training.describe_training_job(job)
    statuses = [t["Status"] for t in desc["SecondaryStatusTransitions"]]
    i = statuses.index("Interrupted")
    assert statuses[:3] == ["Starting", "Downloading", "Training"]
    assert statuses[i + 1] == "Starting" and statuses[-1] == "Completed"
    assert {m["MetricName"] for m in desc["FinalMetricDataList"]} >= {"mAP50", "mAP50-95"}
    log = stack.training.log_path(job).read_text()
    assert "resuming from" in log  # the restarted process continued from the downloaded checkpoint

    bucket_, key = desc["ModelArtifacts"]["S3ModelArtifacts"][5:].split("/", 1)
    archive = s3.get_object(Bucket=bucket_, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert {"best.pt", "metrics.json"} <= set(tar.getnames())

    from yoloops_core.store import RunStore

    record = RunStore(stack.outputs["RunsTableName"], ddb=stack.client("dynamodb")).get_run("ds-proc-v1")
    assert record["status"] == "PROMOTED"
    assert int(record["interruptions"]) == 1  # counted by TrainingEvents from the EventBridge events
    texts = [json.dumps(m) for m in stack.slack_messages]
    assert any("ds-proc-v1" in t and "New champion promoted" in t for t in texts)
    assert any(job in t and "Spot interruption" in t for t in texts)  # TrainingEvents told the team
    streams = stack.client("logs").describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                                        logStreamNamePrefix=job)["logStreams"]
    assert streams  # `yoloops logs RUN` reads these
