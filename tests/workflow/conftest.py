"""One local stack (moto server + the real template + the real handlers) for the workflow tests.

Every test gets a fresh account (moto reset + redeploy) and scripts its own training jobs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from yoloops.local import LocalStack, ScriptedTrainingBackend
from yoloops.synth import generate_dataset

# Tests start executions themselves; uploads must not close by quiet into runs of their own.
QUIET = {"UploadQuietSeconds": "900"}


@pytest.fixture(scope="module")
def workflow_stack(tmp_path_factory):
    stack = LocalStack(workdir=tmp_path_factory.mktemp("stack"), training=ScriptedTrainingBackend(),
                       parameters=dict(QUIET))
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_dataset(root, n_train=4, n_val=2, imgsz=64, layout="ultralytics", seed=3)
    return root


class Harness:
    """What a workflow test drives: datasets in S3, executions, the scripted SageMaker, the records."""

    def __init__(self, stack: LocalStack, dataset_dir: Path):
        self.stack = stack
        self.dataset_dir = dataset_dir
        self.training: ScriptedTrainingBackend = stack.training  # type: ignore[assignment]
        self.sfn = stack.client("stepfunctions")
        self.s3 = stack.client("s3")
        self.ddb = stack.client("dynamodb")
        self.bucket = stack.outputs["ArtifactsBucketName"]
        self.table = stack.outputs["RunsTableName"]
        self.sm_arn = stack.outputs["TrainingStateMachineArn"]

    def upload_dataset(self, name: str, version: str) -> None:
        # No manifest.json and UploadQuietSeconds=900: the S3 trigger stays quiet; the test starts the run.
        for path in sorted(p for p in self.dataset_dir.rglob("*") if p.is_file()):
            key = f"datasets/{name}/{version}/{path.relative_to(self.dataset_dir).as_posix()}"
            self.s3.upload_file(str(path), self.bucket, key)

    @staticmethod
    def run_id(name: str, version: str) -> str:
        """The run id `start` names the execution (content hash fixed: the tests start runs themselves)."""
        from yoloops_core.models import DatasetRef, run_id_for_dataset

        return run_id_for_dataset(DatasetRef(name=name, version=version), "0" * 64)

    def reset(self, **parameters: str) -> None:
        self.stack.reset(parameters={**QUIET, **parameters})
        self.bucket = self.stack.outputs["ArtifactsBucketName"]

    def start(self, name: str, version: str, run_id: str | None = None, request: Any = None) -> str:
        run_id = run_id or self.run_id(name, version)
        body = request if request is not None else {
            "dataset": {"name": name, "version": version, "format": "dir"},
            "trigger": {"source": "manual", "ref": "tests/workflow"},
        }
        resp = self.sfn.start_execution(stateMachineArn=self.sm_arn, name=run_id,
                                        input=body if isinstance(body, str) else json.dumps(body))
        return resp["executionArn"]

    def wait(self, arn: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.stack.wait_for_execution(arn, timeout=timeout)

    def history(self, arn: str) -> list[dict[str, Any]]:
        events, token = [], None
        while True:
            kwargs = {"executionArn": arn, "maxResults": 1000}
            if token:
                kwargs["nextToken"] = token
            page = self.sfn.get_execution_history(**kwargs)
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                return events

    def states_entered(self, arn: str) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history(arn) if "stateEnteredEventDetails" in e]

    def transitions(self, arn: str) -> int:
        """State transitions as billed: one per state entered (Step Functions standard pricing)."""
        return len(self.states_entered(arn))

    def ledger(self):
        from yoloops_core.ledger import BudgetLedger

        return BudgetLedger(self.table, ddb=self.ddb)

    def run_record(self, run_id: str) -> dict[str, Any]:
        from yoloops_core.store import RunStore

        return RunStore(self.table, ddb=self.ddb).get_run(run_id) or {}

    def champion(self, dataset: str) -> dict[str, Any] | None:
        from yoloops_core.store import RunStore

        return RunStore(self.table, ddb=self.ddb).get_champion(dataset)

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    def slack_texts(self) -> list[str]:
        return [json.dumps(m) for m in self.stack.slack_messages]

    def wait_for_slack(self, *needles: str, timeout: float = 10.0) -> str:
        """The first Slack message containing every needle (SNS -> notifier delivery is asynchronous)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in self.slack_texts():
                if all(n in text for n in needles):
                    return text
            self.stack.lambdas.wait_idle(1)
            time.sleep(0.05)
        raise AssertionError(f"no Slack message containing {needles!r}; got {self.slack_texts()}")


@pytest.fixture
def wf(workflow_stack, tiny_dataset, monkeypatch) -> Harness:
    for key, value in {"AWS_ENDPOINT_URL": workflow_stack.endpoint_url,
                       "MOTO_PORT": str(workflow_stack.port)}.items():
        monkeypatch.setenv(key, value)
    workflow_stack.reset(parameters=dict(QUIET))
    return Harness(workflow_stack, tiny_dataset)
