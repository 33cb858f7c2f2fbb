"""Each `yoloops` command against a stack over HTTP: what the user sees, exit codes, --json, side effects."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner
from yoloops_core.models import DatasetRef, RunStatus, run_id_for_dataset
from yoloops_core.run_ids import listing_hash

from yoloops import client as client_mod
from yoloops.cli import app

runner = CliRunner()


# ---------------------------------------------------------------- dataset validate

def test_validate_missing_dir_exits_2_with_clear_message(tmp_path):
    result = runner.invoke(app, ["dataset", "validate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "nope" in result.stderr


def test_validate_valid_dataset_reports_counts(shapes_dir):
    result = runner.invoke(app, ["dataset", "validate", str(shapes_dir)])
    assert result.exit_code == 0, result.output
    assert "VALID" in result.stdout and "images=6" in result.stdout
    data = json.loads(runner.invoke(app, ["dataset", "validate", str(shapes_dir), "--json"]).stdout)
    assert data["valid"] is True and data["splits"]["train"]["images"] == 6


@pytest.fixture
def broken_dir(shapes_dir, tmp_path) -> Path:
    broken = tmp_path / "broken"
    shutil.copytree(shapes_dir, broken)
    (broken / "labels" / "train" / "train_00000.txt").write_text("7 0.5 0.5 0.2 0.2\n")  # class 7 of 3
    return broken


def test_validate_invalid_dataset_exits_1_naming_the_problem(broken_dir):
    result = runner.invoke(app, ["dataset", "validate", str(broken_dir)])
    assert result.exit_code == 1
    assert "REJECTED" in result.stdout and "train_00000.txt" in result.stdout
    data = json.loads(runner.invoke(app, ["dataset", "validate", str(broken_dir), "--json"]).stdout)
    assert data["valid"] is False and data["error_count"] >= 1


# ---------------------------------------------------------------- dataset push

def _record_puts(monkeypatch) -> list[str]:
    """Record every PutObject / upload part the CLI's S3 client sends, in order."""
    sent: list[str] = []
    original = client_mod.Stack.client

    def client(self, service):
        c = original(self, service)
        if service == "s3" and not getattr(c, "_recorded", False):
            c.meta.events.register("before-parameter-build.s3.PutObject", lambda params, **_: sent.append(params["Key"]))
            c.meta.events.register("before-parameter-build.s3.CreateMultipartUpload",
                                   lambda params, **_: sent.append(params["Key"]))
            c._recorded = True
        return c

    monkeypatch.setattr(client_mod.Stack, "client", client)
    return sent


def _content_run_id(root, name: str, version: str) -> str:
    """The run id of these local files pushed as name/version (single-part uploads: ETag = MD5)."""
    entries = [(p.relative_to(root).as_posix(), p.stat().st_size, hashlib.md5(p.read_bytes()).hexdigest())
               for p in root.rglob("*") if p.is_file()]
    return run_id_for_dataset(DatasetRef(name=name, version=version), listing_hash(entries))


def test_push_uploads_every_file_with_its_hash_and_writes_manifest_last(stack, shapes_dir, monkeypatch):
    sent = _record_puts(monkeypatch)
    result = stack.cli("dataset", "push", str(shapes_dir), "--name", "shapes", "--version", "v1", "--workers", "4")
    assert result.exit_code == 0, result.output
    run_id = _content_run_id(shapes_dir, "shapes", "v1")
    assert run_id in result.stdout

    prefix = "datasets/shapes/v1/"
    local_files = sorted(p.relative_to(shapes_dir).as_posix() for p in shapes_dir.rglob("*") if p.is_file())
    assert sent[-1] == prefix + "manifest.json"
    assert sorted(sent[:-1]) == [prefix + f for f in local_files]

    s3 = stack.client("s3")
    manifest = json.loads(s3.get_object(Bucket=stack.bucket, Key=prefix + "manifest.json")["Body"].read())
    assert manifest["dataset"] == "shapes" and manifest["version"] == "v1"
    assert sorted(f["path"] for f in manifest["files"]) == local_files
    for entry in manifest["files"]:
        body = s3.get_object(Bucket=stack.bucket, Key=prefix + entry["path"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        assert len(body) == entry["size"]
        assert body == (shapes_dir / entry["path"]).read_bytes()


def test_push_json_and_default_version_is_a_utc_timestamp(stack, shapes_dir):
    result = stack.cli("dataset", "push", str(shapes_dir), "--name", "shapes", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["version"]) == 15 and data["version"][8] == "-" and data["version"].replace("-", "").isdigit()
    assert data["run_id"] == _content_run_id(shapes_dir, "shapes", data["version"])
    assert data["files"] == 2 * 9 + 1  # images + labels + data.yaml


def test_push_refuses_an_invalid_dataset_unless_forced(stack, broken_dir):
    result = stack.cli("dataset", "push", str(broken_dir), "--name", "shapes", "--version", "bad")
    assert result.exit_code == 1
    assert "refusing to push" in result.stderr and "--force" in result.stderr
    s3 = stack.client("s3")
    assert s3.list_objects_v2(Bucket=stack.bucket, Prefix="datasets/").get("KeyCount", 0) == 0

    forced = stack.cli("dataset", "push", str(broken_dir), "--name", "shapes", "--version", "bad", "--force")
    assert forced.exit_code == 0, forced.output
    s3.head_object(Bucket=stack.bucket, Key="datasets/shapes/bad/manifest.json")


def test_push_missing_dir_exits_2(stack, tmp_path):
    result = stack.cli("dataset", "push", str(tmp_path / "missing"), "--name", "shapes")
    assert result.exit_code == 2 and "does not exist" in result.stderr


# ---------------------------------------------------------------- stack discovery

def test_no_local_stack_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["--local", str(tmp_path), "runs"])
    assert result.exit_code == 1
    assert "no local stack found" in result.stderr and "yoloops local up" in result.stderr


def test_local_stack_not_running_says_how_to_start_it(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "stack.json").write_text(json.dumps({
        "endpoint_url": f"http://127.0.0.1:{port}", "region": "us-east-1", "outputs": {}, "control_url": None}))
    monkeypatch.setenv("YOLOOPS_LOCAL", str(tmp_path))  # the env var finds it too
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 1
    assert "not running" in result.stderr and "yoloops local up" in result.stderr


# ---------------------------------------------------------------- runs / run show / logs

def test_runs_lists_newest_first_filters_and_json(stack):
    stack.add_run("ds-a-v1", "a", RunStatus.PROMOTED, {"mAP50-95": 0.41}, cost_usd=0.12)
    stack.add_run("ds-b-v1", "b", RunStatus.TRAINING)
    data = json.loads(stack.cli("runs", "--json").stdout)
    assert {r["run_id"] for r in data} == {"ds-a-v1", "ds-b-v1"}
    only_a = json.loads(stack.cli("runs", "--dataset", "a", "--json").stdout)
    assert [r["run_id"] for r in only_a] == ["ds-a-v1"] and only_a[0]["metrics"]["mAP50-95"] == 0.41
    table = stack.cli("runs")
    assert table.exit_code == 0 and "ds-a-v1" in table.stdout and "PROMOTED" in table.stdout


def test_run_show_unknown_run_is_a_clear_error(stack):
    result = stack.cli("run", "show", "ds-nope-v9")
    assert result.exit_code == 1
    assert "unknown run 'ds-nope-v9'" in result.stderr


def test_run_show_details_and_json(stack):
    stack.add_run("ds-a-v1", "a", RunStatus.FAILED, failure_reason="CUDA out of memory", interruptions=2)
    shown = stack.cli("run", "show", "ds-a-v1")
    assert shown.exit_code == 0, shown.output
    assert "CUDA out of memory" in shown.stdout and "ds-a-v1-a1" in shown.stdout
    data = json.loads(stack.cli("run", "show", "ds-a-v1", "--json").stdout)
    assert data["run"]["status"] == "FAILED" and data["run"]["interruptions"] == 2
    assert data["links"]["execution"].endswith(":execution:" + stack.outputs["TrainingStateMachineArn"].split(":")[-1]
                                               + ":ds-a-v1")


def test_run_show_prints_the_verdict_table(stack):
    """The ML engineer sees the same side-by-side numbers as Slack: on which images, and which rule decided."""
    verdict = {"basis": "paired", "better": False, "metric": "mAP50-95", "table": [
        {"split": "val", "metric": "mAP50-95", "challenger": 0.41, "champion": 0.45, "delta": -0.04},
        {"split": "test", "metric": "mAP50-95", "challenger": 0.40, "champion": 0.44, "delta": -0.04}],
        "checks": [{"rule": "val", "passed": False, "detail": "mAP50-95 0.4100 vs 0.4500"}],
        "notes": ["class lists differ: compared on the 2 classes both know (box, cone); new classes, not judged: ball"]}
    stack.add_run("ds-a-v2", "a", RunStatus.KEPT, {"mAP50-95": 0.41}, verdict=verdict)
    shown = stack.cli("run", "show", "ds-a-v2")
    assert shown.exit_code == 0, shown.output
    assert "like-for-like: both models scored in this job on the same images" in shown.stdout
    assert "test  mAP50-95        0.4000    0.4400  -0.0400" in shown.stdout
    assert "FAIL val" in shown.stdout and "new classes, not judged: ball" in shown.stdout
    data = json.loads(stack.cli("run", "show", "ds-a-v2", "--json").stdout)
    assert data["run"]["verdict"]["table"][1]["split"] == "test"


def test_logs_prints_the_training_job_streams(stack):
    stack.add_run("ds-a-v1", "a", RunStatus.TRAINING)
    logs = stack.client("logs")
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="ds-a-v1-a1/algo-1-1700000000")
    logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="ds-a-v1-a1/algo-1-1700000000",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "yoloops-metric epoch=1 mAP50=0.1"}])
    result = stack.cli("logs", "ds-a-v1")
    assert result.exit_code == 0, result.output
    assert "yoloops-metric epoch=1 mAP50=0.1" in result.stdout


def test_logs_of_a_run_without_logs_says_so(stack):
    stack.add_run("ds-b-v1", "b", RunStatus.STARTED)
    result = stack.cli("logs", "ds-b-v1")
    assert result.exit_code == 1 and "no training logs for run ds-b-v1" in result.stderr
    assert stack.cli("logs", "ds-unknown").exit_code == 1


# ---------------------------------------------------------------- champion / promote / rollback

def test_champion_unknown_dataset_is_a_clear_error(stack):
    stack.add_run("ds-a-v1", "a", RunStatus.TRAINING)
    result = stack.cli("champion", "zebras")
    assert result.exit_code == 1
    assert "dataset 'zebras' has no champion" in result.stderr and "a" in result.stderr


def _two_champions(stack):
    stack.add_run("ds-a-v1", "a", RunStatus.PROMOTED, {"mAP50-95": 0.30})
    stack.add_run("ds-a-v2", "a", RunStatus.PROMOTED, {"mAP50-95": 0.50})
    stack.add_run("ds-a-v3", "a", RunStatus.KEPT, {"mAP50-95": 0.40})
    for rid, v in (("ds-a-v1", 0.30), ("ds-a-v2", 0.50)):
        assert stack.store.put_champion_if_better("a", rid, "mAP50-95", v, {"mAP50-95": v},
                                                  f"models/a/versions/{rid}/best.pt")


def test_champion_shows_current_and_history(stack):
    _two_champions(stack)
    data = json.loads(stack.cli("champion", "a", "--json").stdout)
    assert data["champion"]["run_id"] == "ds-a-v2" and data["champion"]["previous_run_id"] == "ds-a-v1"
    assert [h["run_id"] for h in data["history"]] == ["ds-a-v2", "ds-a-v1"]
    text = stack.cli("champion", "a")
    assert text.exit_code == 0 and "ds-a-v2" in text.stdout and "0.5000" in text.stdout


def test_promote_is_recorded_copied_and_notified(stack):
    _two_champions(stack)
    result = stack.cli("promote", "ds-a-v3")
    assert result.exit_code == 0, result.output
    champion = stack.store.get_champion("a")
    assert champion["run_id"] == "ds-a-v3" and champion["previous_run_id"] == "ds-a-v2"
    manual = [h for h in stack.store.champion_history("a") if h["action"] == "manual_promote"]
    assert [h["run_id"] for h in manual] == ["ds-a-v3"] and manual[0]["previous_run_id"] == "ds-a-v2"
    body = stack.client("s3").get_object(Bucket=stack.bucket, Key="models/a/champion/best.pt")["Body"].read()
    assert body == b"weights of ds-a-v3"
    [note] = stack.notifications()
    assert note["event_type"] == "champion.manual_promote" and note["run_id"] == "ds-a-v3"
    assert note["dataset"] == "a" and "ds-a-v2" in note["text"]


def test_promote_refuses_unknown_and_unfinished_runs(stack):
    stack.add_run("ds-a-v4", "a", RunStatus.TRAINING)
    assert "unknown run" in stack.cli("promote", "ds-nope").stderr
    result = stack.cli("promote", "ds-a-v4")
    assert result.exit_code == 1 and "TRAINING" in result.stderr
    assert stack.notifications() == []


def test_rollback_restores_previous_champion_recorded_and_notified(stack):
    _two_champions(stack)
    data = json.loads(stack.cli("rollback", "a", "--json").stdout)
    assert data["champion"]["run_id"] == "ds-a-v1" and data["rolled_back_run_id"] == "ds-a-v2"
    assert stack.store.get_champion("a")["run_id"] == "ds-a-v1"
    # (history keys have 1 s resolution, so entries of the same second are not in time order)
    assert {"action": "rollback", "run_id": "ds-a-v1", "replaced_run_id": "ds-a-v2"}.items() <= next(
        h for h in stack.store.champion_history("a") if h["action"] == "rollback").items()
    body = stack.client("s3").get_object(Bucket=stack.bucket, Key="models/a/champion/best.pt")["Body"].read()
    assert body == b"weights of ds-a-v1"
    [note] = stack.notifications()
    assert note["event_type"] == "champion.rollback" and note["run_id"] == "ds-a-v1"
    # Nothing before v1: a second rollback is refused with a reason.
    again = stack.cli("rollback", "a")
    assert again.exit_code == 1 and "no previous champion" in again.stderr


def test_rollback_unknown_dataset(stack):
    result = stack.cli("rollback", "zebras")
    assert result.exit_code == 1 and "dataset 'zebras' has no champion" in result.stderr


# ---------------------------------------------------------------- budget

def test_budget_counts_spend_and_in_flight_worst_case(stack):
    from yoloops_core.budget import month_of_now
    from yoloops_core.ledger import BudgetLedger, Reservation

    ledger = BudgetLedger(stack.store.table, ddb=stack.client("dynamodb"))
    month = month_of_now(None)

    def hold(run_id: str, amount: float) -> None:  # what CheckBudget reserves for an attempt
        ledger.reserve(Reservation(run_id=run_id, attempt=1, month=month, amount_usd=amount, hourly_usd=amount,
                                   max_runtime_seconds=3600, instance_type="ml.g5.xlarge"), 50.0)

    stack.add_run("ds-a-v1", "a", RunStatus.PROMOTED, {"mAP50-95": 0.3}, cost_usd=1.25)
    hold("ds-a-v1", 2.5)
    ledger.settle("ds-a-v1", 1, billable_seconds=1800)  # half its hour: $1.25 spent, the rest released
    stack.add_run("ds-a-v2", "a", RunStatus.TRAINING, worst_case_cost_usd=4.0)
    hold("ds-a-v2", 4.0)
    stack.add_run("ds-b-v1", "b", RunStatus.FAILED, cost_usd=0.0)
    data = json.loads(stack.cli("budget", "--json").stdout)
    assert data["budget_usd"] == 50.0  # the stack's MonthlyBudgetUsd parameter
    assert data["spent_usd"] == 1.25 and data["in_flight_usd"] == 4.0 and data["in_flight_runs"] == 1
    assert data["remaining_usd"] == pytest.approx(44.75)
    assert data["datasets"] == {"a": {"runs": 2, "cost_usd": 1.25}, "b": {"runs": 1, "cost_usd": 0.0}}
    text = stack.cli("budget")
    assert text.exit_code == 0 and "$44.75" in text.stdout and "by dataset" in text.stdout


def test_runs_watch_refreshes_until_ctrl_c(stack, monkeypatch):
    import yoloops.cli.runs as cli_mod

    stack.add_run("ds-a-v1", "a", RunStatus.STARTED)
    sleeps = []

    def fake_sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 1:  # between the two refreshes the run finishes
            stack.store.update_run("ds-a-v1", status=RunStatus.PROMOTED)
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod.time, "sleep", fake_sleep)
    result = stack.cli("runs", "--watch", "--interval", "0.5")
    assert result.exit_code == 0, result.output
    assert sleeps == [0.5, 0.5] and "PROMOTED" in result.stdout


def test_local_interrupt_needs_the_local_stack_control_endpoint(stack, tmp_path):
    result = stack.cli("local", "interrupt", "ds-a-v1-a1")  # this stack.json has no control_url
    assert result.exit_code == 1 and "needs the local stack" in result.stderr
    missing = runner.invoke(app, ["--local", str(tmp_path / "none"), "local", "interrupt", "ds-a-v1-a1"])
    assert missing.exit_code == 1 and "yoloops local up" in missing.stderr
