"""`yoloops doctor` against the local stack (the real template deployed on moto), as a user runs it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from yoloops.cli import app
from yoloops.local import LocalStack, ScriptedTrainingBackend


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = LocalStack(workdir=tmp_path_factory.mktemp("doctor"), training=ScriptedTrainingBackend())
    st.start()
    yield st
    st.stop()


def _doctor(stack, *args):
    return CliRunner().invoke(app, ["--local", str(stack.workdir), "doctor", *args], catch_exceptions=False)


def _by_name(report):
    return {c["name"]: c for c in report["checks"]}


def test_doctor_is_green_on_a_fresh_local_stack_and_posts_to_slack(stack):
    result = _doctor(stack, "--json")
    report = json.loads(result.stdout)
    checks = _by_name(report)
    assert result.exit_code == 0, [c for c in report["checks"] if c["status"] == "fail"]
    assert report["ok"] is True
    assert checks["identity"]["status"] == "ok" and "123456789012" in checks["identity"]["detail"]
    assert checks["function URL GithubWebhookUrl"]["status"] == "ok"
    assert checks["secret Slack webhook"]["status"] == "ok"
    assert checks["Slack test post"]["status"] == "ok"
    assert any("yoloops doctor: test post" in json.dumps(m) for m in stack.slack_messages)
    assert checks["SageMaker quotas"]["status"] == "skip"  # no Service Quotas locally: said, not faked
    assert checks["budget"]["status"] == "ok" and "left of" in checks["budget"]["detail"]
    assert checks["EventBridge rules"]["status"] == "ok"
    assert all(c["status"] == "ok" for n, c in checks.items() if n.startswith("DLQ "))


def test_red_lines_exit_non_zero_with_their_fix(stack):
    sqs, events = stack.client("sqs"), stack.client("events")
    sqs.send_message(QueueUrl=stack.outputs["TriggersDlqUrl"], MessageBody=json.dumps({"lost": "event"}))
    rule = next(r["Name"] for r in events.list_rules()["Rules"] if "TrainingEvents" in r["Name"])
    events.disable_rule(Name=rule)
    sm = stack.client("secretsmanager")
    sm.put_secret_value(SecretId=stack.outputs["SlackWebhookSecretArn"], SecretString="Q" * 32)  # a placeholder
    try:
        result = _doctor(stack, "--json")
        checks = _by_name(json.loads(result.stdout))
        assert result.exit_code == 1
        assert checks["DLQ triggers"]["status"] == "fail" and "yoloops dlq redrive" in checks["DLQ triggers"]["fix"]
        assert checks["EventBridge rules"]["status"] == "fail"
        assert f"aws events enable-rule --name {rule}" in checks["EventBridge rules"]["fix"]
        assert checks["secret Slack webhook"]["status"] == "fail"
        assert "put-secret-value" in checks["secret Slack webhook"]["fix"]
        human = _doctor(stack, "--no-slack")
        assert human.exit_code == 1 and "FAIL" in human.stdout and "fix: aws events enable-rule" in human.stdout
    finally:
        events.enable_rule(Name=rule)
        sm.put_secret_value(SecretId=stack.outputs["SlackWebhookSecretArn"], SecretString=stack.slack_url)
        while sqs.receive_message(QueueUrl=stack.outputs["TriggersDlqUrl"]).get("Messages"):
            sqs.purge_queue(QueueUrl=stack.outputs["TriggersDlqUrl"])
