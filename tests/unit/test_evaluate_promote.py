"""Evaluate: metrics, fallback, comparison, MinFirstMetric, useless models, registration.

Promote (bundle copy, conditional write, copy failures, repair, registry) is tested against moto in
tests/adapters/test_promote_moto.py.
"""

from __future__ import annotations

import json

import pytest
from yoloops_core.evaluate import EvaluateEvent, MetricsMissing, evaluate

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
    # FinalMetricDataList sufficed: no S3 read; the verdict is written next to the version's bundle.
    assert s3.calls == ["put models/pallets/versions/ds-pallets-2026-11-28/verdict.json"]
    verdict = json.loads(s3.objects[(BUCKET, "models/pallets/versions/ds-pallets-2026-11-28/verdict.json")])
    assert verdict["basis"] == "first" and verdict["better"] is True and verdict["dataset_version"] == "2026-11-28"
    rec = store.get_run(ev["run"]["run_id"])
    assert rec["status"] == "EVALUATING" and rec["metrics"]["mAP50-95"] == pytest.approx(0.613)
    assert rec["billable_seconds"] == 1200


def _with_champion(ev, store, value=0.60, metrics=None, run_id="ds-pallets-old", metric="mAP50-95"):
    """The dataset had a champion when the run started (ValidateDataset put it in run.champion)."""
    store.put_champion_if_better("pallets", run_id, metric, value, metrics or {metric: value, "mAP50": 0.8}, "k")
    ev["run"]["champion"] = {"run_id": run_id, "model_key": f"models/pallets/versions/{run_id}/best.pt",
                             "metric": metric, "metric_value": value}
    return ev


def test_without_paired_scores_the_recorded_number_is_used_and_said(event, settings_factory, store, s3):
    """An image that does not score the champion: the recorded number decides, marked not like-for-like."""
    ev = _with_champion(_artifact(s3, "stepfn_evaluate_completed.json", event, metrics={"mAP50-95": 0.613}),
                        store)
    _seed(store, ev)
    out = _evaluate(ev, settings_factory(min_improvement=0.01), store, s3)
    assert out["better"] is True and out["delta"] == pytest.approx(0.013) and out["basis"] == "recorded"
    assert out["like_for_like"] is False and out["champion_run_id"] == "ds-pallets-old"
    assert any("not like-for-like" in n for n in out["verdict"]["notes"])
    out = _evaluate(ev, settings_factory(min_improvement=0.02), store, s3)
    assert out["better"] is False and "(not like-for-like)" in out["reason"]  # +0.013 < the required +0.02


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


class FakeRegistry:
    def __init__(self, fail: bool = False) -> None:
        self.registered: list[dict] = []
        self.fail = fail

    def register(self, **kwargs):
        if self.fail:
            raise RuntimeError("AccessDenied")
        self.registered.append(kwargs)
        return kwargs.get("existing_arn") or f"arn:aws:sagemaker:us-east-1:1:model-package/g/{len(self.registered)}"


def test_min_first_metric_floor_and_reason(event, settings_factory, store, s3):
    ev = event("stepfn_evaluate_completed.json")  # mAP50-95 0.613
    _seed(store, ev)
    out = _evaluate(ev, settings_factory(min_first_metric=0.7), store, s3)
    assert out["better"] is False and "below MinFirstMetric 0.7" in out["reason"]
    out = _evaluate(ev, settings_factory(min_first_metric=0.613), store, s3)
    assert out["better"] is True and "reason" not in out  # reaching the floor exactly is enough


def test_zero_map_is_never_promoted_silently(event, settings_factory, store, s3):
    ev = event("stepfn_evaluate_completed.json")
    for row in ev["training"]["description"]["FinalMetricDataList"]:
        row["Value"] = 0.0
    _seed(store, ev)
    out = _evaluate(ev, settings_factory(), store, s3)  # MinFirstMetric 0.0: today's behaviour, but loud
    assert out["better"] is True and "useless" in out["warning"] and "MinFirstMetric" in out["warning"]
    out = _evaluate(ev, settings_factory(min_first_metric=0.01), store, s3)
    assert out["better"] is False and "useless" in out["reason"]


def test_reason_names_min_improvement_and_champion_on_other_metric(event, settings_factory, store, s3):
    ev = _with_champion(_artifact(s3, "stepfn_evaluate_completed.json", event, metrics={"mAP50-95": 0.613}),
                        store, value=0.61, metrics={"mAP50-95": 0.61})
    _seed(store, ev)
    out = _evaluate(ev, settings_factory(min_improvement=0.01), store, s3)
    assert out["better"] is False and "MinImprovement 0.01" in out["reason"]
    # A champion promoted under another metric is compared on its recorded metrics.
    store.champions["pallets"].update(metric="mAP50", metric_value=0.99)
    ev["run"]["champion"].update(metric="mAP50", metric_value=0.99)
    out = _evaluate(ev, settings_factory(), store, s3)
    assert out["champion"] == pytest.approx(0.61) and out["better"] is True
    store.champions["pallets"]["metrics"] = {"mAP50": 0.99}
    out = _evaluate(ev, settings_factory(), store, s3)
    assert out["better"] is False and "no recorded mAP50-95" in out["reason"]


def test_a_champion_that_appeared_during_training_is_not_silently_compared(event, settings, store, s3):
    """No champion when the run started: judged as a first model; Promote's write then loses (see moto tests)."""
    ev = event("stepfn_evaluate_completed.json")
    _seed(store, ev)
    store.put_champion_if_better("pallets", "ds-pallets-meanwhile", "mAP50-95", 0.9, {"mAP50-95": 0.9}, "k")
    out = _evaluate(ev, settings, store, s3)
    assert out["basis"] == "first" and out["compared_with"] is None


def test_every_evaluated_model_is_registered(event, settings_factory, store, s3):
    ev = event("stepfn_evaluate_completed.json")
    _seed(store, ev)
    reg = FakeRegistry()
    out = evaluate(EvaluateEvent.model_validate(ev), settings=settings_factory(), store=store, s3=s3, registry=reg)
    assert reg.registered[0]["status"] == "PendingManualApproval"  # Promote decides
    assert reg.registered[0]["properties"]["mAP50-95"] == pytest.approx(0.613)
    assert out["model_package_arn"] and store.get_run(ev["run"]["run_id"])["model_package_arn"] == out["model_package_arn"]
    # Re-invoked Evaluate reuses the recorded package (no duplicate); a worse model is Rejected.
    _with_champion(ev, store, value=0.9, run_id="old")
    _artifact(s3, "stepfn_evaluate_completed.json", event, metrics={"mAP50-95": 0.613})
    again = evaluate(EvaluateEvent.model_validate(ev), settings=settings_factory(), store=store, s3=s3, registry=reg)
    assert reg.registered[1]["existing_arn"] == out["model_package_arn"] and reg.registered[1]["status"] == "Rejected"
    assert again["model_package_arn"] == out["model_package_arn"]


def test_registry_failure_is_reported_not_fatal(event, settings_factory, store, s3):
    ev = event("stepfn_evaluate_completed.json")
    _seed(store, ev)
    out = evaluate(EvaluateEvent.model_validate(ev), settings=settings_factory(), store=store, s3=s3,
                   registry=FakeRegistry(fail=True))
    assert out["better"] is True and "AccessDenied" in out["registry_error"]
