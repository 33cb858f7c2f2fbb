"""The step handlers themselves (events/ fixtures) over moto: S3 model artifacts, DynamoDB, SNS, secrets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from yoloops_core.aws import reset_clients
from yoloops_core.models import InvalidInput, RunContext
from yoloops_core.store import RunStore

from yoloops.local.training import model_archive as tar_gz

ROOT = Path(__file__).resolve().parents[2]


def handler(name: str):
    """functions/<name>/app.py loaded by path (every function's module is called `app`)."""
    spec = importlib.util.spec_from_file_location(f"fn_{name}", ROOT / "functions" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.lambda_handler


def _put_artifact(aws, uri: str, files: dict[str, bytes]) -> None:
    aws.client("s3").put_object(Bucket=aws.bucket, Key=uri.split("/", 3)[3], Body=tar_gz(files))


def _seed(aws, run: dict) -> None:
    RunStore(aws.table).create_run(RunContext.model_validate(run))


def _get(aws, key: str) -> bytes:
    return aws.client("s3").get_object(Bucket=aws.bucket, Key=key)["Body"].read()


def test_validate_handler_rejects_malformed_input_naming_fields(aws, event, lambda_context):
    with pytest.raises(InvalidInput, match=r"dataset\.name.*trigger"):
        handler("validate_dataset")(event("stepfn_validate_dataset_malformed.json"), lambda_context)


def test_check_budget_handler_admits_and_publishes(aws, event, lambda_context):
    ev = event("stepfn_check_budget_ok.json")
    _seed(aws, ev["run"])
    out = handler("check_budget")(ev, lambda_context)
    assert out["admitted"] is True and out["attempt"]["job_name"] == "ds-pallets-2026-11-28-a1"
    assert out["plan"]["output_data_config"]["S3OutputPath"] == f"s3://{aws.bucket}/runs/ds-pallets-2026-11-28/output/"
    json.dumps(out)  # the Lambda response must serialize
    assert [m["event_type"] for m in aws.messages()] == ["run.started"]


def test_training_failed_handler(aws, event, lambda_context):
    ev = event("stepfn_training_failed_capacity.json")
    _seed(aws, ev["run"])
    out = handler("training_failed")(ev, lambda_context)
    # Backoff from the stack default RETRY_BACKOFF_SECONDS (60 s) after the first failed attempt.
    assert out == {"number": 2, "job_name": "ds-pallets-2026-11-28-a2", "retry": True,
                   "reason": out["reason"], "backoff_seconds": 60} and out["reason"].startswith("CapacityError")


def test_evaluate_reads_metrics_json_from_s3_artifact(aws, event, lambda_context):
    ev = event("stepfn_evaluate_no_final_metrics.json")
    _seed(aws, ev["run"])
    uri = ev["training"]["description"]["ModelArtifacts"]["S3ModelArtifacts"]
    _put_artifact(aws, uri, {"best.pt": b"w" * 4096, "results.csv": b"epoch\n1\n",
                             "metrics.json": json.dumps({"mAP50": 0.71, "mAP50-95": 0.52}).encode()})
    out = handler("evaluate")(ev, lambda_context)
    assert out["better"] is True and out["metrics_source"] == "metrics.json"
    assert out["challenger"] == pytest.approx(0.52) and out["model_artifacts"] == uri
    rec = RunStore(aws.table).get_run("ds-pallets-2026-11-28")
    assert rec["status"] == "EVALUATING" and rec["metrics"]["mAP50-95"] == pytest.approx(0.52)


def test_promote_copies_files_and_loses_to_a_better_champion(aws, event, lambda_context):
    ev = event("stepfn_promote_better.json")
    _seed(aws, ev["run"])
    _put_artifact(aws, ev["evaluation"]["model_artifacts"], {"best.pt": b"challenger-weights",
                                                             "metrics.json": b'{"mAP50-95": 0.613}'})
    out = handler("promote")(ev, lambda_context)
    assert out["promoted"] is True
    assert _get(aws, "models/pallets/versions/ds-pallets-2026-11-28/best.pt") == b"challenger-weights"
    assert _get(aws, "models/pallets/champion/best.pt") == b"challenger-weights"
    assert json.loads(_get(aws, "models/pallets/champion/metrics.json")) == {"mAP50-95": 0.613}
    # A worse run of the same dataset that finishes later keeps its version but not the champion.
    worse = json.loads(json.dumps(ev))
    worse["run"]["run_id"] = "ds-pallets-2026-11-27"
    worse["evaluation"].update(challenger=0.5, model_artifacts=ev["evaluation"]["model_artifacts"].replace(
        "2026-11-28", "2026-11-27"))
    _put_artifact(aws, worse["evaluation"]["model_artifacts"], {"best.pt": b"worse-weights"})
    out = handler("promote")(worse, lambda_context)
    assert out["promoted"] is False
    assert _get(aws, "models/pallets/champion/best.pt") == b"challenger-weights"
    assert _get(aws, "models/pallets/versions/ds-pallets-2026-11-27/best.pt") == b"worse-weights"
    assert RunStore(aws.table).get_champion("pallets")["run_id"] == "ds-pallets-2026-11-28"


@pytest.mark.parametrize("fixture", ["stepfn_notify_promoted.json", "stepfn_notify_malformed_input.json",
                                     "stepfn_notify_garbage.json", "stepfn_notify_rejected.json"])
def test_notify_handler_publishes_one_message(aws, event, lambda_context, fixture):
    out = handler("notify")(event(fixture), lambda_context)
    assert out["outcome"] in {"finished", "rejected", "failed"}
    (msg,) = aws.messages()
    run_id = event(fixture).get("run_id") or "unknown-run"
    assert msg["run_id"] == run_id
    assert RunStore(aws.table).get_run(run_id)["status"] == out["status"]


def test_slack_notifier_reads_secret_once_and_posts(aws, event, lambda_context, monkeypatch):
    from yoloops_core import slack

    arn = aws.client("secretsmanager").create_secret(
        Name="yoloops/slack", SecretString=json.dumps({"url": "https://hooks.slack.com/services/T/B/X"}))["ARN"]
    monkeypatch.setenv("SLACK_WEBHOOK_SECRET_ARN", arn)
    reset_clients()
    posted = []
    monkeypatch.setattr(slack, "urllib_post", lambda url, body, headers, timeout: (
        posted.append((url, json.loads(body))) or (200, {}, "ok")))
    fn = handler("slack_notifier")
    assert fn(event("sns_promoted.json"), lambda_context) == {"delivered": 1}
    # Rotating the secret is picked up only after the cache's max age: the second call uses the cache.
    aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString="https://hooks.slack.com/services/T/B/Y")
    fn(event("sns_plain_text.json"), lambda_context)
    assert [u for u, _ in posted] == ["https://hooks.slack.com/services/T/B/X"] * 2
    assert posted[0][1]["blocks"][0]["type"] == "header" and "blocks" not in posted[1][1]
    reset_clients()
    assert slack.get_webhook_url(arn) == "https://hooks.slack.com/services/T/B/Y"
    reset_clients()


def test_slack_notifier_raises_when_slack_keeps_failing(aws, event, lambda_context, monkeypatch):
    from yoloops_core import slack

    arn = aws.client("secretsmanager").create_secret(Name="yoloops/slack2",
                                                     SecretString="https://hooks.slack.com/services/T/B/Z")["ARN"]
    monkeypatch.setenv("SLACK_WEBHOOK_SECRET_ARN", arn)
    reset_clients()
    calls = []
    monkeypatch.setattr(slack, "urllib_post", lambda *a: calls.append(a) or (503, {}, "down"))
    monkeypatch.setattr(slack.time, "sleep", lambda s: None)
    with pytest.raises(slack.SlackDeliveryError):
        handler("slack_notifier")(event("sns_training_failed.json"), lambda_context)
    assert len(calls) == slack.MAX_ATTEMPTS
    reset_clients()
