"""Base weights: spec normalisation, resolution (pretrained, champion, fallback), the plan's channel, the step."""

from __future__ import annotations

import json

import pytest
from yoloops_core import weights
from yoloops_core.models import DatasetRef, RunContext, RunRequest
from yoloops_core.plan import build_plan
from yoloops_core.steps import ValidateDatasetEvent, validate_dataset

BUCKET = "yoloops-artifacts-test"


@pytest.mark.parametrize("spec,key", [
    ("", ""), ("  ", ""), ("champion", "champion"), ("Champion", "champion"),
    ("yolo12s.pt", "models/pretrained/yolo12s.pt"),
    ("models/pretrained/yolo12s.pt", "models/pretrained/yolo12s.pt"),
    ("models/pretrained/coco/yolo12s.pt", "models/pretrained/coco/yolo12s.pt"),
    ("coco/yolo12s.pt", "models/pretrained/coco/yolo12s.pt"),
    (f"s3://{BUCKET}/models/pretrained/yolo12s.pt", "models/pretrained/yolo12s.pt"),
])
def test_specs_normalise_to_a_key_under_pretrained(spec, key):
    assert weights.normalize(spec, BUCKET) == key


@pytest.mark.parametrize("spec,message", [
    ("s3://other-bucket/models/pretrained/yolo12s.pt", "bucket 'other-bucket'"),
    (f"s3://{BUCKET}/models/shapes/champion/best.pt", "under models/pretrained/"),
    ("models/shapes/versions/r/best.pt", "under models/pretrained/"),
    ("yolo12s.yaml", "must name a .pt"),
    ("models/pretrained/../secrets.pt", "must name a .pt"),
])
def test_other_buckets_and_prefixes_are_refused_clearly(spec, message):
    with pytest.raises(weights.InvalidBaseWeights, match=message):
        weights.normalize(spec, BUCKET)


def test_resolve_pretrained_champion_and_fallback(store, s3):
    with pytest.raises(weights.BaseWeightsNotFound, match=r"yoloops weights push yolo12s\.pt"):
        weights.resolve("yolo12s.pt", dataset="shapes", bucket=BUCKET, store=store, s3=s3)
    s3.objects[(BUCKET, "models/pretrained/yolo12s.pt")] = b"pt"
    assert weights.resolve("yolo12s.pt", dataset="shapes", bucket=BUCKET, store=store, s3=s3) == \
        "models/pretrained/yolo12s.pt"
    # champion: none yet -> the model YAML (None); then the champion's immutable version file.
    assert weights.resolve("champion", dataset="shapes", bucket=BUCKET, store=store, s3=s3) is None
    store.put_champion_if_better("shapes", "ds-shapes-v1", "mAP50-95", 0.5, {}, "k")
    with pytest.raises(weights.BaseWeightsNotFound, match="champion ds-shapes-v1"):
        weights.resolve("champion", dataset="shapes", bucket=BUCKET, store=store, s3=s3)
    s3.objects[(BUCKET, "models/shapes/versions/ds-shapes-v1/best.pt")] = b"pt"
    assert weights.resolve("champion", dataset="shapes", bucket=BUCKET, store=store, s3=s3) == \
        "models/shapes/versions/ds-shapes-v1/best.pt"
    assert weights.resolve("", dataset="shapes", bucket=BUCKET, store=store, s3=s3) is None


def test_describe_and_record_values():
    assert weights.record_value(None, "yolo11n.yaml") == "scratch:yolo11n.yaml"
    assert weights.describe("scratch:yolo11n.yaml") == "yolo11n.yaml from scratch"
    assert weights.describe("models/shapes/versions/ds-shapes-v1/best.pt").startswith("champion ds-shapes-v1")
    assert weights.describe("models/pretrained/yolo12s.pt") == "models/pretrained/yolo12s.pt"


def _run(base_weights=None, **hp):
    return RunContext(run_id="ds-shapes-v2", dataset=DatasetRef(name="shapes", version="v2"),
                      trigger={"source": "cli", "ref": "me"}, image_uri="img", hyperparameters=hp,
                      base_weights=base_weights, started_at="2026-12-01T00:00:00Z")


def test_plan_adds_the_weights_channel_and_names_the_file(settings):
    plan = build_plan(_run(), "img", settings)
    assert [c["ChannelName"] for c in plan["input_data_config"]] == ["train"]
    assert plan["hyperparameters"]["model"] == settings.default_model
    plan = build_plan(_run("models/pretrained/yolo12s.pt", model="yolo11n.yaml"), "img", settings)
    channel = plan["input_data_config"][1]
    assert channel["ChannelName"] == "weights"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{settings.artifacts_bucket}/models/pretrained/yolo12s.pt"
    assert plan["hyperparameters"]["model"] == "yolo12s.pt"  # the file the container finds in the channel


def _validate(settings, store, s3, validator_factory, request):
    return validate_dataset(ValidateDatasetEvent(run_id="ds-shapes-v2", request=request), settings=settings,
                            store=store, s3=s3, validator=validator_factory())


def _request(**extra):
    return {"dataset": {"name": "shapes", "version": "v2"}, "trigger": {"source": "cli", "ref": "me"}, **extra}


def test_validate_step_resolves_request_then_manifest_then_stack_default(settings_factory, store, s3,
                                                                          validator_factory):
    for name in ("a.pt", "b.pt", "c.pt"):
        s3.objects[(BUCKET, f"models/pretrained/{name}")] = b"pt"
    s3.objects[(BUCKET, "datasets/shapes/v2/manifest.json")] = json.dumps({"files": [], "weights": "b.pt"}).encode()
    settings = settings_factory(artifacts_bucket=BUCKET, base_weights="c.pt")
    out = _validate(settings, store, s3, validator_factory, _request(weights="a.pt"))
    assert out["run"]["base_weights"] == "models/pretrained/a.pt"
    assert store.get_run("ds-shapes-v2")["base_weights"] == "models/pretrained/a.pt"
    assert _validate(settings, store, s3, validator_factory, _request())["run"]["base_weights"] == \
        "models/pretrained/b.pt"
    del s3.objects[(BUCKET, "datasets/shapes/v2/manifest.json")]
    assert _validate(settings, store, s3, validator_factory, _request())["run"]["base_weights"] == \
        "models/pretrained/c.pt"


def test_missing_pretrained_weights_stop_the_run_before_validation(settings_factory, store, s3, validator_factory):
    settings = settings_factory(artifacts_bucket=BUCKET, base_weights="yolo12s.pt")
    validator = validator_factory()
    with pytest.raises(weights.BaseWeightsNotFound, match=r"models/pretrained/yolo12s\.pt not found"):
        validate_dataset(ValidateDatasetEvent(run_id="ds-shapes-v2", request=_request()), settings=settings,
                         store=store, s3=s3, validator=validator)
    assert validator.calls == []  # nothing else was done for a run that cannot start


def test_request_accepts_weights_field():
    assert RunRequest.model_validate(_request(weights="champion")).weights == "champion"


def test_scratch_runs_record_the_model_yaml_the_plan_uses(settings_factory, store, s3, validator_factory):
    settings = settings_factory(artifacts_bucket=BUCKET, default_hyperparameters={"model": "yoloops-tiny.yaml"})
    _validate(settings, store, s3, validator_factory, _request())
    assert store.get_run("ds-shapes-v2")["base_weights"] == "scratch:yoloops-tiny.yaml"
    assert weights.scratch_model({"model": "yolo11s.yaml"}, settings) == "yolo11s.yaml"
