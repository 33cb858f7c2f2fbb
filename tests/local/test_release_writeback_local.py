"""Results back on the release (issue 19 item 4), on the local stack with a fake GitHub API on 127.0.0.1:
without a token nothing is called; with one, a release run writes its verdict, metric table and cost into the
release body and attaches its model bundle, once, even when an upload fails half-way and is retried."""

from __future__ import annotations

import json
import time

import pytest
from support import aws_cli
from typer.testing import CliRunner

from yoloops.cli import app
from yoloops.local import LocalStack, ScriptedTrainingBackend, complete, fail
from yoloops.local.github_api import FakeGithubApi
from yoloops.synth import generate_dataset

pytestmark = pytest.mark.slow
REPO = "local/yoloops"  # what `yoloops local release` publishes as


@pytest.fixture(scope="module")
def github():
    fake = FakeGithubApi().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, github):
    st = LocalStack(workdir=tmp_path_factory.mktemp("writeback"), training=ScriptedTrainingBackend(),
                    function_env={"GITHUB_API_URL": github.url})
    st.start()
    root = tmp_path_factory.mktemp("data") / "robots"
    generate_dataset(root, n_train=3, n_val=2, imgsz=64, seed=5)
    st.training.then(complete({"mAP50": 0.5, "mAP50-95": 0.3}))
    pushed = CliRunner().invoke(app, ["--local", str(st.workdir), "dataset", "push", str(root), "--name", "robots",
                                      "--version", "v1", "--wait", "--timeout", "120"], catch_exceptions=False)
    assert pushed.exit_code == 0, pushed.output
    yield st
    st.stop()


def _release(stack, github, tag, *outcomes):
    github.add_release(REPO, tag, body=f"Release notes of {tag}.\n\n```yaml\ndataset: robots\n```\n")
    stack.training.then(*outcomes)
    result = CliRunner().invoke(app, ["--local", str(stack.workdir), "local", "release", tag, "--dataset", "robots",
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    stack.wait_for_execution(body["execution_arn"], 90)
    stack.lambdas.wait_idle(30)  # SNS -> the write-back is asynchronous
    return body["run_id"], github.release(REPO, tag)


def _record(stack, run_id):
    return json.loads(CliRunner().invoke(app, ["--local", str(stack.workdir), "run", "show", run_id, "--json"],
                                         catch_exceptions=False).stdout)["run"]


def test_without_a_token_the_release_is_left_alone(stack, github):
    run_id, release = _release(stack, github, "v0.9.0", complete({"mAP50": 0.55, "mAP50-95": 0.35}))
    assert _record(stack, run_id)["status"] in ("PROMOTED", "KEPT")
    assert github.calls == [] and release["assets"] == []
    assert release["body"] == "Release notes of v0.9.0.\n\n```yaml\ndataset: robots\n```\n"
    assert "release_writeback" not in _record(stack, run_id)


def _set_token(stack, github):
    aws_cli(stack, "secretsmanager", "put-secret-value", "--secret-id", stack.outputs["GithubTokenSecretArn"],
            "--secret-string", github.token)
    stack.lambdas.cold_start()  # functions cache secrets for 5 minutes: a fresh container reads it now


def test_with_a_token_the_verdict_metrics_cost_and_bundle_land_on_the_release_once(stack, github):
    _set_token(stack, github)
    github.fail_uploads = 1  # the first asset upload fails: the function's retry must not duplicate anything
    run_id, release = _release(stack, github, "v1.0.0", complete({"mAP50": 0.8, "mAP50-95": 0.6}))
    record = _record(stack, run_id)
    assert record["status"] == "PROMOTED"
    body = release["body"]
    assert body.startswith("Release notes of v1.0.0.")  # the notes stay; the section is added below them
    section = body[body.index(f"<!-- yoloops:run {run_id} -->"):body.index(f"<!-- /yoloops:run {run_id} -->")]
    assert "### yoloops: PROMOTED" in section and "| mAP50-95 | 0.6000 |" in section
    assert "cost $" in section and run_id in section
    names = sorted(a["name"] for a in release["assets"])
    assert "best.pt" in names and len(names) == len(set(names))
    versions = stack.client("s3").list_objects_v2(Bucket=stack.outputs["ArtifactsBucketName"],
                                                  Prefix=f"models/robots/versions/{run_id}/")["Contents"]
    assert len(names) == len(versions)
    assert record["release_writeback"]["release"] == f"{REPO}@v1.0.0"
    # The notification again (SNS delivers at least once): nothing more is written.
    calls = len(github.calls)
    msg = json.dumps({"event_type": "model.promoted", "run_id": run_id, "text": "again", "metrics": {}})
    aws_cli(stack, "sns", "publish", "--topic-arn", stack.outputs["NotificationsTopicArn"], "--message", msg,
            "--message-attributes", '{"event_type": {"DataType": "String", "StringValue": "model.promoted"}}')
    time.sleep(1)
    stack.lambdas.wait_idle(30)
    assert [c for c in github.calls[calls:] if c[0] != "GET"] == []
    assert github.release(REPO, "v1.0.0")["body"] == body


def test_a_failed_release_run_writes_its_verdict_and_attaches_nothing(stack, github):
    _set_token(stack, github)
    run_id, release = _release(stack, github, "v1.1.0", fail("AlgorithmError: loss is NaN"))
    assert _record(stack, run_id)["status"] == "FAILED"
    assert "### yoloops: FAILED" in release["body"] and "loss is NaN" in release["body"]
    assert release["assets"] == []


def test_a_write_back_github_refused_waits_in_its_own_dead_letter_queue_and_redrives_there(stack, github):
    _set_token(stack, github)
    github.fail_uploads = 100  # GitHub's upload host is down for the first try and both retries
    run_id, release = _release(stack, github, "v1.2.0", complete({"mAP50": 0.85, "mAP50-95": 0.65}))
    assert release["assets"] == [] and "release_writeback" not in _record(stack, run_id)
    local = ["--local", str(stack.workdir)]
    letters = json.loads(CliRunner().invoke(app, [*local, "dlq", "list", "--queue", "releasewriteback", "--json"],
                                            catch_exceptions=False).stdout)
    assert [d["kind"] for d in letters] == ["release-writeback"] and run_id in letters[0]["summary"]
    github.fail_uploads = 0  # it is back
    result = CliRunner().invoke(app, [*local, "dlq", "redrive", "--queue", "releasewriteback", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["redriven"][0]["to"] == stack.outputs["ReleaseWritebackFunctionName"]
    stack.lambdas.wait_idle(30)
    assert "best.pt" in [a["name"] for a in github.release(REPO, "v1.2.0")["assets"]]
    assert _record(stack, run_id)["release_writeback"]["release"] == f"{REPO}@v1.2.0"
