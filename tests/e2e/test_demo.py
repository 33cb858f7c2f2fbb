"""The demo path end to end on the real local stack, then every CLI command against that stack.

Real pieces only: moto server with the template deployed, the S3 notification firing the trigger
function, the training ASL, train.py as a CPU process, evaluation, promotion, SNS -> Slack receiver.
Tiny settings keep it around a minute or two on 2 cores.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from yoloops.cli import app
from yoloops.demo import DemoSettings, run_demo, start_local_stack

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo with tiny settings, on a stack the tests then query (the demo itself leaves it up)."""
    workdir = tmp_path_factory.mktemp("demo")
    settings = DemoSettings(workdir=workdir, epochs=3, n_train=64, n_val=16, second_n_train=64,
                            run_timeout=300)
    local = start_local_stack(workdir, hyperparameters=settings.training_hyperparameters(), log_level="WARNING")
    try:
        ok = run_demo(settings, local)
        yield settings, local, ok
    finally:
        local.stop()


def cli(local, *args):
    return runner.invoke(app, ["--local", str(local.workdir), *args], catch_exceptions=False)


def run_of(local, version: str) -> str:
    """The run id of a demo dataset version (run ids carry a content hash: read them, do not build them)."""
    runs = json.loads(cli(local, "runs", "--json").stdout)
    (run_id,) = [r["run_id"] for r in runs if r.get("dataset_version") == version]
    assert run_id.startswith(f"ds-shapes-{version}-")
    return run_id


def test_demo_trains_promotes_and_posts_to_slack(demo):
    settings, local, ok = demo
    assert ok, "the demo reported failure (see its output above)"
    v1, v2 = run_of(local, "v1"), run_of(local, "v2")
    run = json.loads(cli(local, "run", "show", v1, "--json").stdout)
    assert run["run"]["status"] == "PROMOTED" and run["execution_status"] == "SUCCEEDED"
    assert [s["name"] for s in run["states"]][:1] == ["ValidateDataset"]
    assert {"Train", "Evaluate", "Promote", "Notify"} <= {s["name"] for s in run["states"]}
    assert run["run"]["metrics"]["epoch"] == settings.epochs  # the demo's hyperparameters reached train.py
    texts = [json.dumps(m) for m in local.slack_messages]
    assert any(v1 in t and "promoted" in t.lower() for t in texts)
    # Version 2 fine-tuned from version 1's champion (its best.pt under versions/), not from scratch.
    second = json.loads(cli(local, "run", "show", v2, "--json").stdout)["run"]
    assert second["base_weights"] == f"models/shapes/versions/{v1}/best.pt", second.get("base_weights")
    # Its verdict is like-for-like: the job scored v1's champion beside it on v2's own val images.
    verdict = second["verdict"]
    assert verdict["basis"] == "paired" and verdict["compared_with"] == v1, verdict
    val = {r["metric"]: r for r in verdict["table"] if r["split"] == "val"}
    assert val["mAP50-95"]["champion"] is not None and val["mAP50-95"]["challenger"] is not None
    assert any("verdict" in json.dumps(m).lower() and "same images" in json.dumps(m) for m in local.slack_messages)
    # The champion's model is in S3 where the workflow put it.
    champion = json.loads(cli(local, "champion", "shapes", "--json").stdout)["champion"]
    s3 = local.client("s3")
    assert s3.head_object(Bucket=local.outputs["ArtifactsBucketName"], Key=champion["model_key"])["ContentLength"] > 0


def test_cli_against_the_local_stack(demo):
    _settings, local, _ok = demo
    runs = json.loads(cli(local, "runs", "--json").stdout)
    assert {r["dataset_version"] for r in runs} == {"v1", "v2"}
    assert all(r["status"] in ("PROMOTED", "KEPT") for r in runs)

    logs = cli(local, "logs", run_of(local, "v1"))
    assert logs.exit_code == 0, logs.output
    assert "yoloops-metric epoch=1" in logs.stdout  # the training process's own stdout

    budget = json.loads(cli(local, "budget", "--json").stdout)
    assert budget["spent_usd"] > 0 and budget["in_flight_runs"] == 0

    assert "unknown run" in cli(local, "run", "show", "ds-shapes-v9").stderr
    assert cli(local, "champion", "zebras").exit_code == 1


def test_manual_promote_and_rollback_reach_slack(demo):
    _settings, local, _ok = demo
    before = json.loads(cli(local, "champion", "shapes", "--json").stdout)["champion"]["run_id"]
    v1, v2 = run_of(local, "v1"), run_of(local, "v2")
    other = v1 if before == v2 else v2
    seen = len(local.slack_messages)

    promoted = cli(local, "promote", other)
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(cli(local, "champion", "shapes", "--json").stdout)["champion"]["run_id"] == other
    s3 = local.client("s3")
    bucket = local.outputs["ArtifactsBucketName"]
    champion_pt = s3.get_object(Bucket=bucket, Key="models/shapes/champion/best.pt")["Body"].read()
    other_pt = s3.get_object(Bucket=bucket, Key=f"models/shapes/versions/{other}/best.pt")["Body"].read()
    assert champion_pt == other_pt

    rolled = cli(local, "rollback", "shapes")
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(cli(local, "champion", "shapes", "--json").stdout)["champion"]["run_id"] == before

    local.lambdas.wait_idle(30)
    new = [json.dumps(m) for m in local.slack_messages[seen:]]
    assert any(other in t for t in new) and any(before in t for t in new), new


def test_local_interrupt_of_an_unknown_job_is_refused(demo):
    _settings, local, _ok = demo
    result = cli(local, "local", "interrupt", "ds-nope-a1")
    assert result.exit_code == 1 and "cannot interrupt ds-nope-a1" in result.stderr


def test_dataset_push_wait_reports_the_outcome(demo, tmp_path):
    from yoloops.synth import generate_dataset

    _settings, local, _ok = demo
    data = tmp_path / "shapes-v3"
    generate_dataset(data, n_train=16, n_val=8, imgsz=64, seed=7)
    result = cli(local, "dataset", "push", str(data), "--name", "shapes", "--version", "v3", "--wait",
                 "--timeout", "240", "--json")
    out = json.loads(result.stdout)
    assert out["run_id"].startswith("ds-shapes-v3-") and out["execution_status"] == "SUCCEEDED"
    assert out["run"]["status"] in ("PROMOTED", "KEPT")
    assert result.exit_code == 0, result.output
