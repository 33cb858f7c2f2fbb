"""`yoloops dlq list|redrive` over HTTP (moto server): what failed, and sending it back where it was going."""

from __future__ import annotations

import json


def _set_parameters(stack, **params):
    path = stack.workdir / "stack.json"
    data = json.loads(path.read_text())
    data["parameters"].update(params)
    data["outputs"].update(stack.outputs)
    path.write_text(json.dumps(data))


def _dlqs(stack):
    sqs = stack.client("sqs")
    suffix = stack.bucket.rsplit("-", 1)[-1]
    notes = sqs.create_queue(QueueName=f"notifications-dlq-{suffix}")["QueueUrl"]
    triggers = sqs.create_queue(QueueName=f"triggers-dlq-{suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=triggers, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    uploads = sqs.create_queue(QueueName=f"uploads-{suffix}", Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": arn, "maxReceiveCount": "1"})})["QueueUrl"]
    stack.outputs.update(NotificationsDlqUrl=notes, TriggersDlqUrl=triggers)
    _set_parameters(stack)
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(
        {"event_type": "run.started", "run_id": "ds-a-v1", "text": "started"})}}]}
    sqs.send_message(QueueUrl=notes, MessageBody=json.dumps(event), MessageAttributes={
        "ErrorMessage": {"DataType": "String", "StringValue": "SlackDeliveryError: HTTP 404"}})
    sqs.send_message(QueueUrl=uploads, MessageBody=json.dumps({"check": "datasets/a/v2/"}))
    for _ in range(3):
        sqs.receive_message(QueueUrl=uploads, VisibilityTimeout=0)
    return sqs, notes, triggers, uploads


def test_dlq_list_shows_what_failed(stack):
    _dlqs(stack)
    letters = json.loads(stack.cli("dlq", "list", "--json").stdout)
    assert {(d["queue"], d["kind"]) for d in letters} == {("notifications", "slack-notifier"),
                                                          ("triggers", "source-queue")}
    note = next(d for d in letters if d["queue"] == "notifications")
    assert note["summary"] == "notification: run.started ds-a-v1" and "HTTP 404" in note["error"]
    assert note["body"]["Records"][0]["EventSource"] == "aws:sns" and note["sent_at"]
    text = stack.cli("dlq", "list", "--queue", "triggers")
    assert text.exit_code == 0 and "source-queue" in text.stdout and "notifications" not in text.stdout
    bad = stack.cli("dlq", "list", "--queue", "nope")
    assert bad.exit_code == 1 and "notifications, triggers" in bad.output


def test_dlq_redrive_sends_back_and_reports_what_it_could_not(stack):
    sqs, _, _, uploads = _dlqs(stack)
    result = stack.cli("dlq", "redrive", "--json")
    assert result.exit_code == 1  # the notification has no function in this stack's outputs: kept, said so
    data = json.loads(result.stdout)
    assert [(r["queue"], r["to"]) for r in data["redriven"]] == [("triggers", uploads)]
    assert [(s["queue"], s["kind"]) for s in data["skipped"]] == [("notifications", "slack-notifier")]
    assert json.loads(sqs.receive_message(QueueUrl=uploads)["Messages"][0]["Body"]) == {"check": "datasets/a/v2/"}
    assert [d["queue"] for d in json.loads(stack.cli("dlq", "list", "--json").stdout)] == ["notifications"]
    assert "no dead letters" in stack.cli("dlq", "redrive", "--queue", "triggers").stdout
