"""CLI tests run `yoloops --local DIR ...` (typer's CliRunner) against a moto server over HTTP.

The stack here is the bare resources the CLI reads (bucket, runs table, topic, state machine) in a
moto server, described by a `stack.json` exactly like the one `yoloops local up` writes; the full
local stack (trigger, workflow, training) is exercised end to end by tests/e2e.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import support
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner
from yoloops_core.models import RunStatus
from yoloops_core.store import RunStore

from yoloops.cli import app

REGION = "us-east-1"
PASS_ASL = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


@pytest.fixture(scope="session")
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class FakeStack:
    workdir: Path
    endpoint: str
    outputs: dict[str, str]
    queue_url: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    @property
    def bucket(self) -> str:
        return self.outputs["ArtifactsBucketName"]

    @property
    def store(self) -> RunStore:
        return RunStore(self.outputs["RunsTableName"], self.client("dynamodb"))

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(app, ["--local", str(self.workdir), *args], catch_exceptions=False)

    def add_run(self, run_id: str, dataset: str, status: RunStatus, metrics: dict[str, float] | None = None,
                **fields: Any) -> None:
        self.store.create_minimal_run(run_id, status, "seeded by test", dataset=dataset,
                                      dataset_version=run_id.rsplit("-", 1)[-1], metrics=metrics or {},
                                      job_names=[f"{run_id}-a1"], attempts=1, **fields)
        if metrics:
            s3 = self.client("s3")
            prefix = f"models/{dataset}/versions/{run_id}/"
            s3.put_object(Bucket=self.bucket, Key=prefix + "best.pt", Body=f"weights of {run_id}".encode())
            s3.put_object(Bucket=self.bucket, Key=prefix + "metrics.json", Body=json.dumps(metrics).encode())

    def notifications(self) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        found = []
        for _ in range(5):
            msgs = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            batch = msgs.get("Messages", [])
            if not batch:
                break
            for m in batch:
                found.append(json.loads(json.loads(m["Body"])["Message"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return found


@pytest.fixture
def stack(moto_endpoint, tmp_path) -> FakeStack:
    """Fresh, uniquely named resources per test, and a stack.json pointing at them."""
    suffix = uuid.uuid4().hex[:8]
    mk = FakeStack(tmp_path / "local", moto_endpoint, {}, "")
    s3, ddb, sns, sqs, sfn = (mk.client(s) for s in ("s3", "dynamodb", "sns", "sqs", "stepfunctions"))
    bucket = f"artifacts-{suffix}"
    s3.create_bucket(Bucket=bucket)
    table = f"runs-{suffix}"
    support.create_runs_table(ddb, table)
    topic = sns.create_topic(Name=f"notifications-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"inbox-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    sm = sfn.create_state_machine(name=f"training-{suffix}", definition=PASS_ASL,
                                  roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    mk.outputs = {"ArtifactsBucketName": bucket, "RunsTableName": table, "NotificationsTopicArn": topic,
                  "TrainingStateMachineArn": sm}
    mk.queue_url = queue_url
    mk.workdir.mkdir()
    (mk.workdir / "stack.json").write_text(json.dumps({
        "endpoint_url": moto_endpoint, "region": REGION, "outputs": mk.outputs,
        "control_url": None, "parameters": {"MonthlyBudgetUsd": "50"},
    }))
    return mk


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    from yoloops.synth import generate_dataset

    root = tmp_path_factory.mktemp("shapes")
    generate_dataset(root, n_train=6, n_val=3, imgsz=48, layout="ultralytics", seed=1)
    return root
