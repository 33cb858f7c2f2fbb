"""The local SageMaker backends against their contract, with S3 from moto and a stand-in container.

The stand-in script obeys the same SageMaker container contract as training_container/train.py
(SAGEMAKER_BASE_DIR, hyperparameters.json, channels, model/, checkpoints/, output/failure, metric
lines) so each backend rule is checked in well under a second; the real train.py runs in
test_process_training.py.
"""

from __future__ import annotations

import io
import tarfile
import textwrap
import time

import boto3
import pytest
from moto import mock_aws

from yoloops.local.training import (
    ProcessTrainingBackend,
    SageMakerApiError,
    ScriptedTrainingBackend,
    capacity_error,
    complete,
)

CONTAINER = textwrap.dedent('''
    import json, os, pathlib, sys, time
    base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
    hp = json.loads((base / "input/config/hyperparameters.json").read_text())
    data = sorted(p.name for p in (base / "input/data/train").rglob("*") if p.is_file())
    ckpt = base / "checkpoints"
    mode = hp["mode"]
    if mode == "fail":
        (base / "output/failure").write_text("AlgorithmError: dataset has no labels")
        sys.exit(1)
    if mode == "sleep":
        time.sleep(60)
    if mode == "resume":
        state = ckpt / "state.txt"
        if state.exists():
            print("resumed from epoch", state.read_text(), flush=True)
        else:
            state.write_text("1")
            print("yoloops-metric epoch=1 mAP50=0.1 mAP50-95=0.05", flush=True)
            time.sleep(60)
    print("files", data, flush=True)
    print("yoloops-metric epoch=1 mAP50=0.2 mAP50-95=0.1", flush=True)
    print("yoloops-metric epoch=2 mAP50=0.4 mAP50-95=0.3 precision=0.5", flush=True)
    (ckpt / "last.pt").write_bytes(b"ckpt")
    (base / "model/best.pt").write_bytes(b"weights")
''')


def _request(name: str, mode: str, *, max_runtime: int = 600) -> dict:
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/sm",
        "AlgorithmSpecification": {"TrainingImage": "local", "TrainingInputMode": "File"},
        "HyperParameters": {"mode": mode},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": "s3://bkt/datasets/d/v1/"}}}],
        "OutputDataConfig": {"S3OutputPath": "s3://bkt/runs/r/output/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime, "MaxWaitTimeInSeconds": max_runtime * 2},
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": "s3://bkt/runs/r/checkpoints/", "LocalPath": "/opt/ml/checkpoints"},
    }


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # in-process moto, not a local stack
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bkt")
        client.put_object(Bucket="bkt", Key="datasets/d/v1/data.yaml", Body=b"names: [a]\n")
        client.put_object(Bucket="bkt", Key="datasets/d/v1/images/train/x.jpg", Body=b"jpg")
        yield client


@pytest.fixture
def process_backend(s3, tmp_path):
    script = tmp_path / "container.py"
    script.write_text(CONTAINER)
    events: list[dict] = []
    backend = ProcessTrainingBackend(tmp_path / "work", script=script, checkpoint_sync_s=0.1)
    backend.attach(s3, events.append)
    backend.stop_grace_s = 1.0
    backend.events = events
    yield backend
    backend.close()


def test_completed_job_has_metrics_model_archive_and_checkpoints(process_backend, s3):
    process_backend.create_training_job(_request("r-a1", "ok"))
    job = process_backend.wait("r-a1", timeout=30)
    desc = job.describe()
    assert desc["TrainingJobStatus"] == "Completed"
    # Last value of each metric, as SageMaker keeps it.
    assert {m["MetricName"]: m["Value"] for m in desc["FinalMetricDataList"]} == {
        "epoch": 2.0, "mAP50": 0.4, "mAP50-95": 0.3, "precision": 0.5}
    assert desc["ModelArtifacts"]["S3ModelArtifacts"] == "s3://bkt/runs/r/output/r-a1/output/model.tar.gz"
    body = s3.get_object(Bucket="bkt", Key="runs/r/output/r-a1/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("best.pt").read() == b"weights"
    assert s3.get_object(Bucket="bkt", Key="runs/r/checkpoints/last.pt")["Body"].read() == b"ckpt"
    assert "['data.yaml', 'x.jpg']" in process_backend.log_path("r-a1").read_text()  # channel copied
    assert [e["SecondaryStatus"] for e in process_backend.events] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]


def test_failure_file_becomes_the_failure_reason(process_backend):
    process_backend.create_training_job(_request("r-a1", "fail"))
    desc = process_backend.wait("r-a1", timeout=30).describe()
    assert desc["TrainingJobStatus"] == "Failed"
    assert desc["FailureReason"] == "AlgorithmError: dataset has no labels"
    assert "ModelArtifacts" not in desc


def test_max_runtime_stops_the_job(process_backend):
    process_backend.create_training_job(_request("r-a1", "sleep", max_runtime=1))
    desc = process_backend.wait("r-a1", timeout=30).describe()
    assert (desc["TrainingJobStatus"], desc["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")


def test_interrupt_restarts_the_job_from_the_s3_checkpoints(process_backend):
    process_backend.create_training_job(_request("r-a1", "resume"))
    deadline = time.monotonic() + 20
    while not (process_backend.job_dir("r-a1") / "checkpoints" / "state.txt").exists() or \
            "r-a1" not in process_backend._procs:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # let the checkpoint sync pick it up (files younger than 0.2 s are skipped)
    process_backend.interrupt("r-a1")
    job = process_backend.wait("r-a1", timeout=30)
    assert job.status == "Completed" and job.interruptions == 1
    assert "resumed from epoch 1" in process_backend.log_path("r-a1").read_text()
    statuses = [t["Status"] for t in job.describe()["SecondaryStatusTransitions"]]
    assert statuses[statuses.index("Interrupted") + 1] == "Starting"
    with pytest.raises(RuntimeError, match="not running"):
        process_backend.interrupt("r-a1")


def test_missing_channel_data_fails_like_sagemaker(process_backend):
    request = _request("r-a1", "ok")
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = "s3://bkt/datasets/none/"
    process_backend.create_training_job(request)
    desc = process_backend.wait("r-a1", timeout=30).describe()
    assert desc["TrainingJobStatus"] == "Failed" and desc["FailureReason"].startswith("ClientError: No S3 objects")


def test_scripted_backend_rejects_like_the_api(s3):
    backend = ScriptedTrainingBackend()
    backend.attach(s3, lambda detail: None)
    backend.then(capacity_error(), complete({"mAP50-95": 0.5}))
    with pytest.raises(SageMakerApiError) as err:
        backend.create_training_job(_request("r-a1", "ok"))
    assert err.value.code == "ResourceLimitExceeded"
    backend.create_training_job(_request("r-a2", "ok"))
    assert backend.wait("r-a2", timeout=10).status == "Completed"
    with pytest.raises(SageMakerApiError, match="already exists"):
        backend.create_training_job(_request("r-a2", "ok"))
    bad = _request("r-a3", "ok")
    bad["StoppingCondition"] = {"MaxRuntimeInSeconds": 600}  # spot needs MaxWaitTimeInSeconds
    with pytest.raises(SageMakerApiError, match="MaxWaitTimeInSeconds"):
        backend.create_training_job(bad)
    bad = _request("r_a4", "ok")
    with pytest.raises(SageMakerApiError, match="trainingJobName"):
        backend.create_training_job(bad)
    assert backend.job_names == ["r-a1", "r-a2", "r-a2", "r-a3", "r_a4"]  # every request is recorded
