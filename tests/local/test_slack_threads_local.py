"""Threads on the local stack: SlackChannel set + the bot token the stack puts in SlackBotTokenSecret, so the
notifier talks to the local Slack Web API receiver (slack_sdk WebClient, base_url = the stack's /slack-api/).

Then a delivery Slack refuses ends in the notifications DLQ, `yoloops dlq list` shows it, `yoloops dlq
redrive` sends it again and it reaches Slack. (Without a token, tests/local/test_local_stack.py: the webhook.)
"""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner
from yoloops_core.store import RunStore

from yoloops.cli import app
from yoloops.local import LocalStack, ScriptedTrainingBackend, complete
from yoloops.synth import generate_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = LocalStack(workdir=tmp_path_factory.mktemp("threads"), training=ScriptedTrainingBackend(),
                    parameters={"SlackChannel": "ml-runs", "UploadQuietSeconds": "900"})  # runs started by hand
    st.start()
    yield st
    st.stop()


@pytest.fixture(autouse=True)
def _endpoint(stack, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint_url)
    monkeypatch.setenv("MOTO_PORT", str(stack.port))


def _publish(stack, **message):
    stack.client("sns").publish(TopicArn=stack.outputs["NotificationsTopicArn"], Message=json.dumps(message))


def test_a_run_is_one_thread_started_then_edited_with_the_verdict(stack, tmp_path):
    root = tmp_path / "ds"
    generate_dataset(root, n_train=3, n_val=2, imgsz=64, seed=7)
    s3, sfn = stack.client("s3"), stack.client("stepfunctions")
    bucket = stack.outputs["ArtifactsBucketName"]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"datasets/thr/v1/{path.relative_to(root).as_posix()}")
    stack.training.then(complete({"mAP50": 0.5, "mAP50-95": 0.3}, hold=True))
    arn = sfn.start_execution(
        stateMachineArn=stack.outputs["TrainingStateMachineArn"], name="ds-thr-v1",
        input=json.dumps({"dataset": {"name": "thr", "version": "v1"}, "trigger": {"source": "manual", "ref": "t"}}),
    )["executionArn"]
    store = RunStore(stack.outputs["RunsTableName"], stack.client("dynamodb"))
    deadline = time.monotonic() + 60
    while not (store.get_run("ds-thr-v1") or {}).get("slack_ts"):
        assert time.monotonic() < deadline, "run.started never reached Slack"
        time.sleep(0.1)
    # While it trains, another message of the run (as the training-events function publishes it).
    _publish(stack, event_type="training.interrupted", run_id="ds-thr-v1", dataset="thr", version="v1",
             text="Spot capacity reclaimed <!channel>; resuming from the last checkpoint.")
    stack.lambdas.wait_idle(10)
    stack.training.release(stack.job_name("ds-thr-v1"))
    assert stack.wait_for_execution(arn, timeout=120)["status"] == "SUCCEEDED"

    record = store.get_run("ds-thr-v1")
    thread = stack.slack_thread(record["slack_ts"])
    assert record["slack_channel"] == thread["parent"]["channel"] and record["slack_channel"].startswith("C")
    assert thread["edits"] == 1  # the parent now shows the verdict, not "started"
    assert thread["parent"]["blocks"][0]["text"]["text"].endswith(("New champion promoted", "Champion kept"))
    replies = [r["text"] for r in thread["replies"]]
    assert len(replies) == 2 and "Spot capacity reclaimed" in replies[0] and "ds-thr-v1" in json.dumps(thread)
    assert all(m.get("api") for m in stack.slack_messages)  # no webhook post in threaded mode
    assert "<!channel>" not in json.dumps(stack.slack_messages)
    assert "&lt;!channel&gt;" in replies[0]
    # Schedule rules are not matched by the run's SageMaker/Step Functions events (moto's empty pattern would).
    scheduled = {stack.function_name("RefreshPricesFunction"), stack.function_name("WatchdogFunction")}
    assert not [i for i in stack.lambdas.invocations if i.function in scheduled]


def _cli(stack, *args):
    return CliRunner().invoke(app, ["--local", str(stack.workdir), *args], catch_exceptions=False)


def test_undelivered_message_is_listed_in_the_dlq_and_redriven_to_slack(stack):
    stack.slack_reply_status = 400  # Slack answers ok: false (e.g. the bot was removed from the channel)
    try:
        _publish(stack, event_type="model.promoted", run_id="ds-never-recorded", text="lost champion")
        assert stack.lambdas.wait_idle(30)
    finally:
        stack.slack_reply_status = 200
    assert not [m for m in stack.slack_messages if "lost champion" in json.dumps(m)]
    listed = json.loads(_cli(stack, "dlq", "list", "--json").stdout)
    [letter] = [d for d in listed if "ds-never-recorded" in d["summary"]]
    assert letter["queue"] == "notifications" and letter["kind"] == "slack-notifier"
    assert "Slack rejected chat_postMessage: invalid_auth" in letter["error"]

    result = json.loads(_cli(stack, "dlq", "redrive", "--queue", "notifications", "--json").stdout)
    assert [r["message_id"] for r in result["redriven"]] == [letter["message_id"]] and not result["skipped"]
    assert result["redriven"][0]["to"] == stack.outputs["SlackNotifierFunctionName"]
    assert stack.lambdas.wait_idle(30)
    [posted] = [m for m in stack.slack_messages if "lost champion" in json.dumps(m)]
    assert posted["api"] == "chat.postMessage" and "thread_ts" not in posted  # no run record: top level
    assert json.loads(_cli(stack, "dlq", "list", "--queue", "notifications", "--json").stdout) == []
