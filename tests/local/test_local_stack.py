"""The local stack as a user meets it: template deployed, triggers wired, endpoints reachable."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

import pytest
from yoloops_core.models import DatasetRef, run_id_for_dataset
from yoloops_core.run_ids import listing_hash

from yoloops.local import LocalStack, ScriptedTrainingBackend, complete
from yoloops.synth import generate_dataset

CONTRACT_OUTPUTS = {"ArtifactsBucketName", "RunsTableName", "IdempotencyTableName", "NotificationsTopicArn",
                    "TrainingStateMachineArn", "GithubWebhookUrl", "SlackWebhookSecretArn",
                    "GithubWebhookSecretArn", "WandbSecretArn", "NotificationsDlqUrl"}
SECRET = "tests-local-webhook-secret"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = LocalStack(workdir=tmp_path_factory.mktemp("local"), training=ScriptedTrainingBackend(),
                    github_webhook_secret=SECRET)
    st.start()
    yield st
    st.stop()
    assert not (st.workdir / "stack.json").exists()  # the CLI must not find a stopped stack


@pytest.fixture(autouse=True)
def _endpoint(stack, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint_url)
    monkeypatch.setenv("MOTO_PORT", str(stack.port))


def _wait_execution(stack, arn_prefix: str, name: str, timeout: float = 30.0) -> dict:
    sfn = stack.client("stepfunctions")
    arn = arn_prefix.replace(":stateMachine:", ":execution:") + ":" + name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.lambdas.wait_idle(5)
        try:
            return stack.wait_for_execution(sfn.describe_execution(executionArn=arn)["executionArn"], timeout)
        except sfn.exceptions.ExecutionDoesNotExist:
            time.sleep(0.1)
    raise AssertionError(f"no execution {name} was started")


def test_stack_is_up_with_the_contract_outputs_and_stack_json(stack):
    assert set(stack.outputs) >= CONTRACT_OUTPUTS
    info = json.loads((stack.workdir / "stack.json").read_text())
    parameters = info.pop("parameters")
    assert info == {"endpoint_url": stack.endpoint_url, "region": "us-east-1", "outputs": stack.outputs,
                    "control_url": stack.control_url}
    # The deployed parameters (defaults included) let the CLI compute figures as the functions do.
    assert parameters["MonthlyBudgetUsd"] == "100" and parameters["PromotionMetric"] == "mAP50-95"
    # boto3 works against it like against AWS.
    s3 = stack.client("s3")
    assert stack.outputs["ArtifactsBucketName"] in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    sm = stack.client("stepfunctions").describe_state_machine(stateMachineArn=stack.outputs["TrainingStateMachineArn"])
    assert "${" not in sm["definition"]  # every DefinitionSubstitution resolved to a deployed ARN
    assert "sagemaker:createTrainingJob.sync" in sm["definition"]


def test_functions_run_in_process_with_their_own_environment(stack):
    lam = stack.client("lambda")
    name = stack.function_name("ValidateDatasetFunction")
    env = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    assert env["RUNS_TABLE"] == stack.outputs["RunsTableName"]
    # An exception is returned the way Lambda returns it (what Step Functions' Catch sees).
    resp = lam.invoke(FunctionName=name, Payload=json.dumps({"run_id": "x", "request": {}}).encode())
    assert resp["FunctionError"] == "Unhandled"
    payload = json.loads(resp["Payload"].read())
    assert set(payload) >= {"errorMessage", "errorType", "stackTrace"}
    assert payload["errorType"] in ("InvalidInput", "ValidationError")


def test_manifest_upload_fires_the_trigger_and_the_run_reaches_slack(stack, tmp_path):
    from yoloops_core.dataset.manifest import build_manifest

    root = tmp_path / "ds"
    generate_dataset(root, n_train=3, n_val=2, imgsz=64, seed=5)
    bucket = stack.outputs["ArtifactsBucketName"]
    s3 = stack.client("s3")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"datasets/trig/v1/{path.relative_to(root).as_posix()}")
    stack.training.then(complete({"mAP50": 0.5, "mAP50-95": 0.3}))
    manifest = build_manifest(root, "trig", "v1")
    s3.put_object(Bucket=bucket, Key="datasets/trig/v1/manifest.json", Body=json.dumps(manifest).encode())

    # The run id carries the content hash of the uploaded listing.
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="datasets/trig/v1/")["Contents"]
    run_id = run_id_for_dataset(DatasetRef(name="trig", version="v1"), listing_hash(
        (o["Key"].removeprefix("datasets/trig/v1/"), o["Size"], o["ETag"]) for o in listed))
    result = _wait_execution(stack, stack.outputs["TrainingStateMachineArn"], run_id)
    assert result["status"] == "SUCCEEDED"
    assert any(run_id in json.dumps(m) for m in stack.slack_messages)
    # The SageMaker state-change events reached the TrainingEvents function through the EventBridge rule.
    events = [i for i in stack.lambdas.invocations
              if i.source == "events" and i.event.get("detail-type") == "SageMaker Training Job State Change"]
    assert all("TrainingEvents" in e.function for e in events)
    assert {e.event["detail"]["SecondaryStatus"] for e in events} >= {"Starting", "Training", "Completed"}
    assert all(e.error is None for e in events)
    # The control endpoint shows what the Slack receiver got.
    with urllib.request.urlopen(f"{stack.control_url}/slack", timeout=10) as resp:
        assert any(run_id in json.dumps(m) for m in json.loads(resp.read()))


def test_github_webhook_function_url_answers_signed_and_rejects_unsigned(stack):
    url = stack.outputs["GithubWebhookUrl"]
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": sig})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    bad = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=00"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=30)
    assert err.value.code == 401


def test_interrupt_endpoint_reports_unknown_jobs(stack):
    req = urllib.request.Request(f"{stack.control_url}/interrupt/no-such-job-a1", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 409


def test_undeliverable_slack_message_is_retried_then_kept_in_the_dlq(stack):
    sns = stack.client("sns")
    stack.slack_reply_status = 400  # Slack rejects (revoked webhook): the notifier raises at once
    try:
        sns.publish(TopicArn=stack.outputs["NotificationsTopicArn"], Message=json.dumps(
            {"event_type": "run.started", "run_id": "dlq-run", "text": "started"}))
        assert stack.lambdas.wait_idle(30)
    finally:
        stack.slack_reply_status = 200
    tries = [i for i in stack.lambdas.invocations
             if i.source == "sns" and "dlq-run" in json.dumps(i.event)]
    assert len(tries) == 3 and all(t.error for t in tries)  # first try + MaximumRetryAttempts 2
    sqs = stack.client("sqs")
    got = sqs.receive_message(QueueUrl=stack.outputs["NotificationsDlqUrl"], MaxNumberOfMessages=10,
                              MessageAttributeNames=["All"])["Messages"]
    [msg] = [m for m in got if "dlq-run" in m["Body"]]
    assert "Slack" in msg["MessageAttributes"]["ErrorMessage"]["StringValue"]
