"""Releases on the local stack end to end: `yoloops local release TAG` = CI's image push + GitHub's signed
webhook over HTTP; a release whose image never came is re-published into a new run."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import aws_cli
from typer.testing import CliRunner

from yoloops.cli import app
from yoloops.local import LocalStack, ScriptedTrainingBackend, complete
from yoloops.local.release import ReleaseError, deliver, parse_parameter_overrides, release_event
from yoloops.synth import generate_dataset

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_parameter_overrides_parse_like_sam_deploy():
    assert parse_parameter_overrides(["UploadQuietSeconds=5 InstanceType=ml.m5.large",
                                      "ParameterKey=LogLevel,ParameterValue=DEBUG", "DefaultHyperparameters='{\"a\": 1}'"]) \
        == {"UploadQuietSeconds": "5", "InstanceType": "ml.m5.large", "LogLevel": "DEBUG",
            "DefaultHyperparameters": '{"a": 1}'}
    with pytest.raises(ReleaseError, match="not Key=Value"):
        parse_parameter_overrides(["NoEquals"])


def test_local_up_refuses_a_value_cloudformation_would_refuse(tmp_path):
    # Its own process, as a user runs it (a failed stack start must not share this process's moto).
    yoloops = Path(sys.executable).parent / "yoloops"
    result = subprocess.run([str(yoloops), "local", "up", "--dir", str(tmp_path / "s"), "--parameter-overrides",
                             "UploadQuietSeconds=0 LogLevel=WARNING"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "UploadQuietSeconds=0 is below its MinValue 1" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = LocalStack(workdir=tmp_path_factory.mktemp("release"), training=ScriptedTrainingBackend())
    st.start()
    yield st
    st.stop()


def cli(stack, *args):
    return runner.invoke(app, ["--local", str(stack.workdir), *args], catch_exceptions=False)


def _runs(stack, prefix):
    sfn = stack.client("stepfunctions")
    return [e for e in sfn.list_executions(stateMachineArn=stack.outputs["TrainingStateMachineArn"])["executions"]
            if e["name"].startswith(prefix)]


def _push_dataset(stack, tmp_path, name):
    from yoloops_core.dataset.manifest import build_manifest

    root = tmp_path / name
    generate_dataset(root, n_train=3, n_val=2, imgsz=64, seed=9)
    s3, bucket = stack.client("s3"), stack.outputs["ArtifactsBucketName"]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"datasets/{name}/v1/{path.relative_to(root).as_posix()}")
    stack.training.then(complete({"mAP50": 0.5, "mAP50-95": 0.3}))
    s3.put_object(Bucket=bucket, Key=f"datasets/{name}/v1/manifest.json",
                  Body=json.dumps(build_manifest(root, name, "v1")).encode())
    deadline = time.monotonic() + 60
    while not (runs := _runs(stack, f"ds-{name}-v1-")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert stack.wait_for_execution(runs[0]["executionArn"], 60)["status"] == "SUCCEEDED", stack.slack_messages[-1:]


def test_local_release_pushes_the_image_and_the_signed_webhook_starts_a_run(stack, tmp_path):
    _push_dataset(stack, tmp_path, "rel")
    stack.training.then(complete({"mAP50": 0.6, "mAP50-95": 0.4}))
    result = cli(stack, "local", "release", "v1.0.0", "--dataset", "rel", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == 202 and body["started"] and body["run_id"].startswith("gh-local-yoloops-v1-0-0-")
    repo = stack.outputs["TrainingImageRepositoryName"]
    (image,) = stack.client("ecr").describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1.0.0"}])["imageDetails"]
    desc = stack.wait_for_execution(body["execution_arn"], 90)
    assert desc["status"] == "SUCCEEDED"
    job = stack.training.jobs[stack.job_name(body['run_id'])]
    # Trained with the release's image, by digest (tags are mutable, digests are not).
    assert job.request["AlgorithmSpecification"]["TrainingImage"].endswith("@" + image["imageDigest"])
    assert image["imageDigest"] == body["digest"]
    # The same release again (e.g. GitHub redelivers): no second run.
    again = json.loads(cli(stack, "local", "release", "v1.0.0", "--dataset", "rel", "--json").stdout)
    assert again["status"] == 200 and not again["started"] and again["run_id"] == body["run_id"]


def test_republishing_after_the_image_never_came_starts_a_new_run(stack, tmp_path):
    _push_dataset(stack, tmp_path, "late")
    # GitHub published the release, but CI has not pushed the image: the run waits, then gives up.
    secret = stack.client("secretsmanager").get_secret_value(
        SecretId=stack.outputs["GithubWebhookSecretArn"])["SecretString"]
    status, first = deliver(stack.outputs["GithubWebhookUrl"], secret, release_event("v2.0.0", dataset="late"))
    assert status == 202
    desc = stack.wait_for_execution(first["execution_arn"], 60)
    assert desc["status"] == "FAILED"
    assert any("ImageNotFound" in json.dumps(m) or "never appeared" in json.dumps(m) for m in stack.slack_messages)
    # CI pushed it; the release is published again (same release.id): a new run, suffixed -r2.
    stack.training.then(complete({"mAP50": 0.6, "mAP50-95": 0.4}))
    result = json.loads(cli(stack, "local", "release", "v2.0.0", "--dataset", "late", "--json").stdout)
    assert result["status"] == 202 and result["run_id"] == first["run_id"] + "-r2"
    assert stack.wait_for_execution(result["execution_arn"], 90)["status"] == "SUCCEEDED"


def _entered(stack, arn, state):
    """Timestamps at which the execution entered `state`."""
    sfn, events, token = stack.client("stepfunctions"), [], None
    while True:
        page = sfn.get_execution_history(executionArn=arn, **({"nextToken": token} if token else {}))
        events += page["events"]
        if not (token := page.get("nextToken")):
            break
    return [e["timestamp"] for e in events if e["type"].endswith("StateEntered")
            and e.get("stateEnteredEventDetails", {}).get("name") == state]


def test_an_image_pushed_while_the_run_waits_ends_the_wait_at_once(stack, tmp_path):
    """CI pushes the image minutes after the release was published: training starts seconds after the push
    (ECR's push event hands WaitForImage's token back), not at the next poll 5 minutes later."""
    from yoloops.local.release import image_manifest

    stack.reset(parameters={"ImagePollSeconds": "300", "ImageMaxPolls": "3"})
    _push_dataset(stack, tmp_path, "early")
    secret = stack.client("secretsmanager").get_secret_value(
        SecretId=stack.outputs["GithubWebhookSecretArn"])["SecretString"]
    status, body = deliver(stack.outputs["GithubWebhookUrl"], secret, release_event("v3.0.0", dataset="early"))
    assert status == 202
    arn = body["execution_arn"]
    deadline = time.monotonic() + 30
    while not _entered(stack, arn, "WaitForImage"):
        assert time.monotonic() < deadline, "the run never started waiting for its image"
        time.sleep(0.2)
    time.sleep(1)  # the token is parked
    assert len(_entered(stack, arn, "CheckImage")) == 1
    # CI's push, with the aws CLI (what `docker push` amounts to for ECR: PutImage of the manifest).
    stack.training.then(complete({"mAP50": 0.6, "mAP50-95": 0.4}))
    pushed = time.monotonic()
    aws_cli(stack, "ecr", "put-image", "--repository-name", stack.outputs["TrainingImageRepositoryName"],
            "--image-tag", "v3.0.0", "--image-manifest", image_manifest("v3.0.0"))
    desc = stack.wait_for_execution(arn, 90)
    assert desc["status"] == "SUCCEEDED", stack.slack_messages[-1:]
    checks = _entered(stack, arn, "CheckImage")
    assert len(checks) == 2
    assert time.monotonic() - pushed < 60  # the whole run, against a 300 s poll interval
    assert (checks[1] - checks[0]).total_seconds() < 30


def test_a_release_delivered_with_curl_trains_and_a_forged_one_is_refused(stack, tmp_path):
    """The clients a team has: CI pushes with the aws CLI, GitHub's delivery is replayed with curl."""
    from yoloops.local.release import image_manifest

    curl = shutil.which("curl")
    assert curl, "curl is needed on the PATH"
    _push_dataset(stack, tmp_path, "curled")
    aws_cli(stack, "ecr", "put-image", "--repository-name", stack.outputs["TrainingImageRepositoryName"],
            "--image-tag", "v4.0.0", "--image-manifest", image_manifest("v4.0.0"))
    secret = stack.client("secretsmanager").get_secret_value(
        SecretId=stack.outputs["GithubWebhookSecretArn"])["SecretString"]
    body = tmp_path / "release.json"
    body.write_bytes(json.dumps(release_event("v4.0.0", dataset="curled")).encode())

    def post(signature: str) -> tuple[int, dict]:
        out = subprocess.run([curl, "-sS", "-X", "POST", "--data-binary", f"@{body}", "-w", "\n%{http_code}",
                              "-H", "Content-Type: application/json", "-H", "X-GitHub-Event: release",
                              "-H", f"X-GitHub-Delivery: curl-{signature[-8:]}",
                              "-H", f"X-Hub-Signature-256: {signature}", stack.outputs["GithubWebhookUrl"]],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        text, _, code = out.rpartition("\n")
        return int(code), (json.loads(text) if text.strip().startswith("{") else {"body": text})

    forged = "sha256=" + hmac.new(b"not-the-secret", body.read_bytes(), hashlib.sha256).hexdigest()
    assert post(forged)[0] == 401
    assert not _runs(stack, "gh-local-yoloops-v4-0-0-")  # a forged delivery starts nothing
    stack.training.then(complete({"mAP50": 0.6, "mAP50-95": 0.4}))
    status, answer = post("sha256=" + hmac.new(secret.encode(), body.read_bytes(), hashlib.sha256).hexdigest())
    assert status == 202 and answer["started"], answer
    assert stack.wait_for_execution(answer["execution_arn"], 90)["status"] == "SUCCEEDED", stack.slack_messages[-1:]
    job = stack.training.jobs[stack.job_name(answer['run_id'])]
    digest = stack.client("ecr").describe_images(repositoryName=stack.outputs["TrainingImageRepositoryName"],
                                                 imageIds=[{"imageTag": "v4.0.0"}])["imageDetails"][0]["imageDigest"]
    assert job.request["AlgorithmSpecification"]["TrainingImage"].endswith("@" + digest)
