"""No secret value reaches logs, SNS messages, Step Functions execution input/output or a training
job's Environment: a full run on the local stack with distinctive secret values, then a scan of
everything the stack captured."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
import uuid

import pytest

from yoloops.local import complete

GOOD = {"mAP50": 0.80, "mAP50-95": 0.62, "precision": 0.8, "recall": 0.7}


def _post(url: str, body: bytes, secret: str, event: str = "ping") -> int:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": uuid.uuid4().hex,
        "X-Hub-Signature-256": sig})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_no_secret_value_reaches_logs_sns_executions_or_job_environment(wf, capfd, caplog):
    from yoloops_core.aws import reset_clients

    caplog.set_level(logging.DEBUG, logger="yoloops")

    out = wf.stack.outputs
    sm = wf.stack.client("secretsmanager")
    secrets = {"GithubWebhookSecretArn": f"gh-hook-{uuid.uuid4().hex}",
               "WandbSecretArn": f"wandb-key-{uuid.uuid4().hex}"}
    for name, value in secrets.items():
        sm.put_secret_value(SecretId=out[name], SecretString=value)
    reset_clients()  # handlers must read the values just set, not cached ones
    # The Slack secret stays the local receiver's URL (delivery must work); it must not leak either.
    secrets["SlackWebhookSecretArn"] = sm.get_secret_value(SecretId=out["SlackWebhookSecretArn"])["SecretString"]

    # Every SNS message, as published: an SQS queue subscribed to the topic with raw delivery.
    sqs, sns = wf.stack.client("sqs"), wf.stack.client("sns")
    queue = sqs.create_queue(QueueName=f"leak-probe-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=out["NotificationsTopicArn"], Protocol="sqs", Endpoint=queue_arn,
                  Attributes={"RawMessageDelivery": "true"})

    # The webhook reads and uses the GitHub secret (a signed ping answers, a forged one does not).
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    assert _post(out["GithubWebhookUrl"], ping, secrets["GithubWebhookSecretArn"]) == 200
    assert _post(out["GithubWebhookUrl"], ping, "not-the-secret") == 401

    # A full run: validate, budget, train (the job gets the W&B secret's ARN), evaluate, promote, notify.
    wf.upload_dataset("leakcheck", "v1")
    wf.training.then(complete(GOOD))
    arn = wf.start("leakcheck", "v1")
    result = wf.wait(arn, timeout=90)
    assert result["status"] == "SUCCEEDED", wf.history(arn)[-3:]
    run_id = result["name"]
    wf.wait_for_slack(run_id)

    messages = []
    for _ in range(5):
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        messages += [m["Body"] for m in got]
    printed = capfd.readouterr()
    # Every record the functions logged (powertools logger "yoloops" and its children), with all its
    # attributes (`extra` keys land there), plus what they printed. Not the test's own boto3 debug lines.
    records = [json.dumps({k: str(v) for k, v in r.__dict__.items()}) for r in caplog.records
               if r.name == "yoloops" or r.name.startswith("yoloops.")]
    places = {
        "logs": "\n".join(records) + printed.out + printed.err,
        "SNS messages": "\n".join(messages),
        "execution input/output and history": json.dumps([wf.sfn.describe_execution(executionArn=arn),
                                                          wf.history(arn)], default=str),
        "training job Environment": json.dumps(
            [r.get("Environment") for r in wf.training.requests]
            + [wf.stack.client("sagemaker").describe_training_job(TrainingJobName=r["TrainingJobName"])
               .get("Environment") for r in wf.training.requests], default=str),
        "Lambda events and results": json.dumps([(i.event, i.result) for i in wf.stack.lambdas.invocations
                                                 if i.function and "GithubWebhook" not in i.function],
                                                default=str),
    }
    # The probes saw the run (so an empty capture cannot pass): its id in the logs, in SNS, in the history.
    assert run_id in places["logs"] and run_id in places["SNS messages"]
    assert len(messages) >= 2 and run_id in places["execution input/output and history"]
    assert out["WandbSecretArn"] in places["training job Environment"]  # the ARN, read at run time
    leaks = [f"{secret} in {where}" for secret, value in secrets.items() for where, text in places.items()
             if value in text]
    assert not leaks, leaks
