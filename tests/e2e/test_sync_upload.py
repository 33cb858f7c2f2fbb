"""Done-when of issue 8: a plain `aws s3 sync` of a Roboflow export to datasets/<name> on the local stack
trains and promotes a model, with no yoloops command involved (no manifest, no version folder).

Real pieces: the `aws` CLI, moto S3 -> SQS, the emulated event source mapping, the S3 trigger, the
workflow, train.py on the CPU (the demo's measured recipe), evaluation, promotion, Slack receiver.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from yoloops import synth
from yoloops.demo import DEMO_HYPERPARAMETERS, start_local_stack
from yoloops.synth import generate_dataset

ROOT = Path(__file__).resolve().parents[2]
AWS_CLI = ROOT / ".venv-awscli" / "bin" / "aws"

pytestmark = pytest.mark.slow


def test_plain_aws_s3_sync_of_a_roboflow_export_trains_and_promotes(tmp_path):
    if not AWS_CLI.exists():
        pytest.fail(f"the aws CLI is missing at {AWS_CLI}: `make test` installs it (target .venv-awscli)")
    export = tmp_path / "fizz_export"
    generate_dataset(export, n_train=256, n_val=32, imgsz=synth.DEMO_DATASET["imgsz"], layout="roboflow", seed=1)
    stack = start_local_stack(tmp_path / "stack", hyperparameters=dict(DEMO_HYPERPARAMETERS), log_level="WARNING")
    try:
        bucket = stack.outputs["ArtifactsBucketName"]
        env = {**os.environ, "AWS_ENDPOINT_URL": stack.endpoint_url, "AWS_DEFAULT_REGION": stack.region,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_PAGER": ""}
        subprocess.run([str(AWS_CLI), "s3", "sync", str(export), f"s3://{bucket}/datasets/fizz"], env=env,
                       check=True, capture_output=True, timeout=300)
        sfn = stack.client("stepfunctions")
        deadline = time.monotonic() + 120
        while not (runs := sfn.list_executions(stateMachineArn=stack.outputs["TrainingStateMachineArn"])["executions"]):
            assert time.monotonic() < deadline, "the sync started no run"
            time.sleep(0.5)
        (run,) = runs
        assert run["name"].startswith("ds-fizz-")
        assert stack.wait_for_execution(run["executionArn"], timeout=900)["status"] == "SUCCEEDED"
        champion = stack.client("dynamodb").get_item(
            TableName=stack.outputs["RunsTableName"],
            Key={"pk": {"S": "DATASET#fizz"}, "sk": {"S": "CHAMPION"}}).get("Item")
        assert champion and champion["run_id"]["S"] == run["name"]
        assert any("model.promoted" in json.dumps(m) or "promoted" in json.dumps(m).lower()
                   for m in stack.slack_messages)
        listed = stack.client("s3").list_objects_v2(Bucket=bucket, Prefix="models/fizz/champion/")["Contents"]
        assert any(o["Key"].endswith("best.pt") for o in listed)
    finally:
        stack.stop()
