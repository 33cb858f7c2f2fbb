"""Retrain and retry on the local stack (issue 19 item 1): `yoloops train` with overrides, `run retry` of a
failed run, and the same as one `aws stepfunctions start-execution` with the documented input."""

from __future__ import annotations

import json
import re
import time

import pytest
from support import aws_cli
from typer.testing import CliRunner

from yoloops.cli import app
from yoloops.local import LocalStack, ScriptedTrainingBackend, complete, fail
from yoloops.synth import generate_dataset

pytestmark = pytest.mark.slow
GOOD = {"mAP50": 0.5, "mAP50-95": 0.3}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = LocalStack(workdir=tmp_path_factory.mktemp("retrain"), training=ScriptedTrainingBackend())
    st.start()
    yield st
    st.stop()


def cli(stack, *args):
    return CliRunner().invoke(app, ["--local", str(stack.workdir), *args], catch_exceptions=False)


def _slack_about(stack, run_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = [json.dumps(m) for m in stack.slack_messages if run_id in json.dumps(m)]
        if texts:
            return "\n".join(texts)
        time.sleep(0.2)
    raise AssertionError(f"no Slack message about {run_id}")


@pytest.fixture(scope="module")
def pushed(stack, tmp_path_factory):
    """A validated version `shapes@v1` whose upload run finished: what retrains start from."""
    root = tmp_path_factory.mktemp("data") / "shapes"
    generate_dataset(root, n_train=3, n_val=2, imgsz=64, seed=3)
    stack.training.then(complete(GOOD))
    result = cli(stack, "dataset", "push", str(root), "--name", "shapes", "--version", "v1", "--wait",
                 "--timeout", "120", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["run_id"]


def _jobs(stack, run_id):
    """The run's training jobs: `<run id>[-<stack code>]-a<n>`."""
    return [n for n in list(stack.training.jobs) if re.fullmatch(rf"{re.escape(run_id)}(-[0-9a-f]{{8}})?-a\d+", n)]


def _job(stack, run_id):
    (name,) = _jobs(stack, run_id)
    return stack.training.jobs[name].request


def _hyperparameters(stack, run_id):
    return _job(stack, run_id)["HyperParameters"]


def test_retrain_with_overrides_is_a_new_run_through_the_same_workflow(stack, pushed):
    stack.training.then(complete({"mAP50": 0.6, "mAP50-95": 0.4}))
    result = cli(stack, "train", "shapes@v1", "--set", "epochs=3", "--set", "imgsz=96", "--set", "lr0=1e-3",
                 "--wait", "--timeout", "120", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["run_id"] == f"{pushed}-t1" and body["of_run"] == pushed
    assert body["input"]["trigger"]["source"] == "retrain" and body["input"]["overrides"] == \
        {"epochs": 3, "imgsz": 96, "lr0": 0.001}
    hp = _hyperparameters(stack, body["run_id"])
    assert (hp["epochs"], hp["imgsz"], hp["lr0"]) == ("3", "96", "0.001")
    run = body["run"]
    assert run["status"] in ("PROMOTED", "KEPT") and run["trigger_source"] == "retrain"
    assert run["overrides"] == {"epochs": "3", "imgsz": "96", "lr0": "0.001"}
    states = [s["name"] for s in json.loads(cli(stack, "run", "show", body["run_id"], "--json").stdout)["states"]]
    assert states[:2] == ["ValidateDataset", "IsDatasetValid"] and "CheckBudget" in states and "Evaluate" in states
    _slack_about(stack, body["run_id"])
    stack_type = _job(stack, pushed)["ResourceConfig"]["InstanceType"]
    assert _job(stack, body["run_id"])["ResourceConfig"]["InstanceType"] == stack_type != "ml.m5.xlarge"
    # The newest version is the default; the next retrain takes the next number; its own instance type.
    stack.training.then(complete(GOOD))
    again = json.loads(cli(stack, "train", "shapes", "--instance-type", "ml.m5.xlarge", "--json").stdout)
    assert again["run_id"] == f"{pushed}-t2" and again["version"] == "v1"
    assert stack.wait_for_execution(again["execution_arn"], 90)["status"] == "SUCCEEDED"
    assert _job(stack, again["run_id"])["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert "ml.m5.xlarge" in _slack_about(stack, again["run_id"])  # priced and announced as that type
    bad = cli(stack, "train", "shapes", "--instance-type", "g5.huge")
    assert bad.exit_code == 1 and "instance_type" in bad.stderr


def test_a_bad_override_is_refused_by_name_before_anything_starts(stack, pushed):
    for option, words in (("epochs=0", "epochs=0"), ("imgsz=big", "imgsz='big'"),
                          ("mosaicc=0.5", "mosaicc is not a hyperparameter that can be set")):
        result = cli(stack, "train", "shapes@v1", "--set", option)
        assert result.exit_code == 1 and words in result.stderr, result.output
    result = cli(stack, "train", "nope@v1")
    assert result.exit_code == 1 and "has no complete upload" in result.stderr


def test_retry_of_a_failed_run_reruns_it_with_its_own_inputs(stack, pushed):
    stack.training.then(fail("AlgorithmError: CUDA out of memory"))
    first = json.loads(cli(stack, "train", "shapes@v1", "--set", "batch=64", "--json").stdout)
    assert stack.wait_for_execution(first["execution_arn"], 90)["status"] == "FAILED"
    assert json.loads(cli(stack, "run", "show", first["run_id"], "--json").stdout)["run"]["status"] == "FAILED"
    # Fixed since (a smaller batch): the same run again, its inputs kept, one override changed.
    stack.training.then(complete(GOOD))
    result = cli(stack, "run", "retry", first["run_id"], "--set", "batch=16", "--wait", "--timeout", "120", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["run_id"] == f"{pushed}-y1" and body["of_run"] == first["run_id"]
    assert body["input"]["dataset"] == first["input"]["dataset"]
    assert body["input"]["trigger"]["source"] == "retry" and body["input"]["trigger"]["ref"] == first["run_id"]
    assert _hyperparameters(stack, body["run_id"])["batch"] == "16"
    assert body["run"]["status"] in ("PROMOTED", "KEPT")
    # A run still in flight is not retried.
    stack.training.then(complete(GOOD, hold=True))
    held = json.loads(cli(stack, "train", "shapes@v1", "--json").stdout)
    deadline = time.monotonic() + 30
    while not _jobs(stack, held["run_id"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    result = cli(stack, "run", "retry", held["run_id"])
    assert result.exit_code == 1 and "only a finished run can be retried" in result.stderr
    stack.training.release(_jobs(stack, held["run_id"])[0])
    assert stack.wait_for_execution(held["execution_arn"], 90)["status"] == "SUCCEEDED"


def test_the_aws_cli_starts_a_retrain_and_the_workflow_checks_its_overrides(stack, pushed):
    sm = stack.outputs["TrainingStateMachineArn"]
    dataset = {"name": "shapes", "version": "v1", "format": "dir"}
    good = {"dataset": dataset, "trigger": {"source": "retrain", "ref": pushed, "detail": {"by": "ci"}},
            "overrides": {"epochs": 2, "optimizer": "AdamW"}}
    stack.training.then(complete(GOOD))
    started = json.loads(aws_cli(stack, "stepfunctions", "start-execution", "--state-machine-arn", sm,
                                 "--name", f"{pushed}-t9", "--input", json.dumps(good)))
    assert stack.wait_for_execution(started["executionArn"], 90)["status"] == "SUCCEEDED"
    hp = _hyperparameters(stack, f"{pushed}-t9")
    assert (hp["epochs"], hp["optimizer"]) == ("2", "AdamW")

    bad = {**good, "overrides": {"epochs": 2, "workers": 64}}  # not on the allow-list
    started = json.loads(aws_cli(stack, "stepfunctions", "start-execution", "--state-machine-arn", sm,
                                 "--name", f"{pushed}-t10", "--input", json.dumps(bad)))
    desc = stack.wait_for_execution(started["executionArn"], 60)
    assert desc["status"] == "FAILED"
    assert "workers is not a hyperparameter that can be set" in _slack_about(stack, f"{pushed}-t10")
    assert _jobs(stack, f"{pushed}-t10") == []

    # A retrain must say so in its name.
    started = json.loads(aws_cli(stack, "stepfunctions", "start-execution", "--state-machine-arn", sm,
                                 "--name", "my-own-name", "--input", json.dumps(good)))
    assert stack.wait_for_execution(started["executionArn"], 60)["status"] == "FAILED"
    assert f"must be named {pushed}-t1" in _slack_about(stack, "my-own-name")
