"""Evaluate (metrics, fallback, comparison) and Promote (file order, conditional champion write)."""

from __future__ import annotations

import json

import pytest
from yoloops_core.evaluate import EvaluateEvent, MetricsMissing, evaluate, is_better
from yoloops_core.promote import PromoteEvent, manual_promote, promote, rollback

from yoloops.local.training import model_archive as tar_gz

BUCKET = "yoloops-artifacts-test"


def _artifact(s3, event_name, event, metrics=None, extra=None):
    ev = event(event_name)
    uri = ev["training"]["description"].get("ModelArtifacts", {}).get("S3ModelArtifacts") \
        if "training" in ev else ev["evaluation"]["model_artifacts"]
    files = {"best.pt": b"weights-" + uri.encode()}
    if metrics is not None:
        files["metrics.json"] = json.dumps(metrics).encode()
    files.update(extra or {})
    s3.objects[(BUCKET, uri.split("/", 3)[3])] = tar_gz(files)
    return ev


def _evaluate(ev, settings, store, s3):
    return evaluate(EvaluateEvent.model_validate(ev), settings=settings, store=store, s3=s3)


def _seed(store, ev):
    from yoloops_core.models import RunContext

    store.create_run(RunContext.model_validate(ev["run"]))


def test_first_model_of_a_dataset_is_better(event, settings, store, s3):
    ev = event("stepfn_evaluate_completed.json")
    _seed(store, ev)
    out = _evaluate(ev, settings, store, s3)
    assert out["better"] is True and out["champion"] is None and out["delta"] is None
    assert out["challenger"] == pytest.approx(0.613) and out["metrics_source"] == "FinalMetricDataList"
    assert s3.calls == []  # FinalMetricDataList sufficed: no S3 read
    rec = store.get_run(ev["run"]["run_id"])
    assert rec["status"] == "EVALUATING" and rec["metrics"]["mAP50-95"] == pytest.approx(0.613)
    assert rec["billable_seconds"] == 1200


def test_challenger_compared_with_champion_and_min_improvement(event, settings_factory, store, s3):
    ev = event("stepfn_evaluate_completed.json")
    _seed(store, ev)
    store.put_champion_if_better("pallets", "ds-pallets-old", "mAP50-95", 0.60, {"mAP50-95": 0.60, "mAP50": 0.8}, "k")
    out = _evaluate(ev, settings_factory(min_improvement=0.01), store, s3)
    assert out["better"] is True and out["delta"] == pytest.approx(0.013)
    assert out["deltas"]["mAP50"] == pytest.approx(0.012) and out["champion_run_id"] == "ds-pallets-old"
    out = _evaluate(ev, settings_factory(min_improvement=0.02), store, s3)
    assert out["better"] is False  # +0.013 is below the required +0.02


def test_equal_or_worse_is_not_better():
    assert is_better(0.5, 0.5, 0.0) is False
    assert is_better(0.49, 0.5, 0.0) is False
    assert is_better(0.51, 0.5, 0.0) is True


def test_metrics_fall_back_to_metrics_json_in_the_artifact(event, settings, store, s3):
    ev = _artifact(s3, "stepfn_evaluate_no_final_metrics.json", event,
                   metrics={"mAP50": 0.7, "mAP50-95": 0.52, "per_class": {"pallet": 0.5}, "epochs": 30})
    _seed(store, ev)
    out = _evaluate(ev, settings, store, s3)
    assert out["metrics_source"] == "metrics.json"
    assert out["challenger"] == pytest.approx(0.52) and out["metrics"]["epochs"] == 30
    assert "per_class" not in out["metrics"]


def test_missing_metric_everywhere_raises(event, settings, store, s3):
    ev = _artifact(s3, "stepfn_evaluate_no_final_metrics.json", event, metrics={"mAP50": 0.7})
    _seed(store, ev)
    with pytest.raises(MetricsMissing, match="mAP50-95"):
        _evaluate(ev, settings, store, s3)


def _promote(ev, store, s3):
    return promote(PromoteEvent.model_validate(ev), bucket=BUCKET, store=store, s3=s3)


def _promote_event(event, run_id, value):
    ev = event("stepfn_promote_better.json")
    ev["run"] = dict(ev["run"], run_id=run_id)
    ev["evaluation"] = dict(ev["evaluation"], challenger=value, metrics=dict(ev["evaluation"]["metrics"], **{"mAP50-95": value}),
                            model_artifacts=f"s3://{BUCKET}/runs/{run_id}/output/{run_id}-a1/output/model.tar.gz")
    return ev


def _put_artifact(s3, ev, files):
    s3.objects[(BUCKET, ev["evaluation"]["model_artifacts"].split("/", 3)[3])] = tar_gz(files)


def test_promote_writes_versions_then_champion(event, store, s3):
    ev = _promote_event(event, "run-a", 0.6)
    _put_artifact(s3, ev, {"weights/best.pt": b"A-weights", "metrics.json": b'{"mAP50-95": 0.6}',
                           "results.csv": b"x"})
    out = _promote(ev, store, s3)
    assert out["promoted"] is True
    assert s3.objects[(BUCKET, "models/pallets/versions/run-a/best.pt")] == b"A-weights"
    assert s3.objects[(BUCKET, "models/pallets/champion/best.pt")] == b"A-weights"
    assert s3.objects[(BUCKET, "models/pallets/champion/metrics.json")] == b'{"mAP50-95": 0.6}'
    puts = [c for c in s3.calls if not c.startswith("get")]
    assert puts.index("put models/pallets/versions/run-a/best.pt") < puts.index(
        "copy models/pallets/versions/run-a/best.pt -> models/pallets/champion/best.pt")
    assert store.get_champion("pallets")["run_id"] == "run-a"
    assert store.champion_history("pallets")[0]["action"] == "promote"
    # Re-invoked promote of the same run succeeds again (idempotent).
    assert _promote(ev, store, s3)["promoted"] is True


def test_worse_model_finishing_later_cannot_replace_better(event, store, s3):
    better, worse = _promote_event(event, "run-better", 0.7), _promote_event(event, "run-worse", 0.6)
    _put_artifact(s3, better, {"best.pt": b"better"})
    _put_artifact(s3, worse, {"best.pt": b"worse"})
    assert _promote(better, store, s3)["promoted"] is True
    out = _promote(worse, store, s3)  # both were "better" than the champion they each saw
    assert out["promoted"] is False and "run-better" in out["reason"]
    assert store.get_champion("pallets")["run_id"] == "run-better"
    assert s3.objects[(BUCKET, "models/pallets/champion/best.pt")] == b"better"
    # The loser's files are still kept as a version.
    assert s3.objects[(BUCKET, "models/pallets/versions/run-worse/best.pt")] == b"worse"
    # metrics.json absent from the artifact: written from the evaluation.
    assert json.loads(s3.objects[(BUCKET, "models/pallets/versions/run-worse/metrics.json")])["mAP50-95"] == 0.6


def test_artifact_without_best_pt_fails_before_touching_the_champion(event, store, s3):
    ev = _promote_event(event, "run-x", 0.9)
    _put_artifact(s3, ev, {"metrics.json": b"{}"})
    with pytest.raises(Exception, match=r"no best\.pt"):
        _promote(ev, store, s3)
    assert store.get_champion("pallets") is None


def test_manual_promote_and_rollback_move_files_and_record(event, store, s3):
    a, b = _promote_event(event, "run-a", 0.5), _promote_event(event, "run-b", 0.7)
    _put_artifact(s3, a, {"best.pt": b"A"})
    _put_artifact(s3, b, {"best.pt": b"B"})
    for ev in (a, b):
        from yoloops_core.models import RunContext

        store.create_run(RunContext.model_validate(ev["run"]))
        _promote(ev, store, s3)
    assert s3.objects[(BUCKET, "models/pallets/champion/best.pt")] == b"B"
    rollback("pallets", bucket=BUCKET, store=store, s3=s3)
    assert store.get_champion("pallets")["run_id"] == "run-a"
    assert s3.objects[(BUCKET, "models/pallets/champion/best.pt")] == b"A"
    manual_promote("run-b", bucket=BUCKET, store=store, s3=s3)
    assert store.get_champion("pallets")["run_id"] == "run-b"
    assert s3.objects[(BUCKET, "models/pallets/champion/best.pt")] == b"B"
    with pytest.raises(ValueError, match="unknown run"):
        manual_promote("nope", bucket=BUCKET, store=store, s3=s3)
