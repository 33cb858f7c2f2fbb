"""Sweep ranges, names and the tuning request: what `yoloops sweep` refuses before it spends anything."""

from __future__ import annotations

import pytest
from yoloops_core.config import Settings
from yoloops_core.models import DatasetRef, InvalidInput, RunContext, Trigger
from yoloops_core.sweep import (
    SweepSpec,
    parameter_ranges,
    parse_param,
    sweep_job_slot,
    tuning_job_name,
    tuning_request,
)

SETTINGS = Settings(artifacts_bucket="bkt", runs_table="t", notifications_topic_arn="arn:aws:sns:us-east-1:1:t",
                    sagemaker_role_arn="arn:aws:iam::1:role/sm", stack_code="1a2b3c4d", default_epochs=30)


def test_ranges_parse_into_sagemaker_parameter_ranges():
    spec = SweepSpec(params=[parse_param("lr0=1e-4..1e-2:log"), parse_param("epochs=10..50"),
                             parse_param("imgsz=512,640,768")], max_jobs=6, parallel=2)
    assert parameter_ranges(spec) == {
        "ContinuousParameterRanges": [{"Name": "lr0", "MinValue": "1e-4", "MaxValue": "1e-2",
                                       "ScalingType": "Logarithmic"}],
        "IntegerParameterRanges": [{"Name": "epochs", "MinValue": "10", "MaxValue": "50", "ScalingType": "Auto"}],
        "CategoricalParameterRanges": [{"Name": "imgsz", "Values": ["512", "640", "768"]}]}


@pytest.mark.parametrize("spec, words", [
    ("lr0", "expected NAME=LO..HI"),
    ("lr0=1e-2..1e-4", "not an increasing range"),
    ("lr0=0..0.1:log", "positive lower bound"),
    ("lr0=1e-4..5", "lr0"),  # above the allow-list's bound of 1
    ("imgsz=512,abc", "imgsz"),
    ("warp=1..2", "warp"),  # not an allowed hyperparameter
    ("lr0=1e-4..1e-2:cubic", "unknown scaling"),
])
def test_bad_ranges_are_refused_naming_them(spec, words):
    with pytest.raises(InvalidInput, match=words):
        parse_param(spec)


def test_inconsistent_sweeps_are_refused():
    with pytest.raises(ValueError, match="more than --max-jobs"):
        SweepSpec(params=[parse_param("lr0=0.001..0.01")], max_jobs=2, parallel=3)
    with pytest.raises(ValueError, match="hyperband decides how many epochs"):
        SweepSpec(params=[parse_param("epochs=5..9")], max_jobs=4, strategy="hyperband")


def test_tuning_job_names_fit_32_characters_and_end_with_the_stack_code():
    for dataset in ("a", "robots", "a-very-long-dataset-name-from-a-customer-2024_Q3"):
        name = tuning_job_name(f"sw-{dataset}-v1-12345678", dataset, "1a2b3c4d")
        assert len(name) <= 32 and name.startswith("sw-") and name.endswith("-1a2b3c4d"), name
    assert tuning_job_name("sw-x-v1-1", "x") != tuning_job_name("sw-x-v1-2", "x")  # one per sweep
    job = f"{tuning_job_name('sw-x-v1-1', 'x', '1a2b3c4d')}-003-0f1e2d3c"
    assert len(job) <= 63 and sweep_job_slot(job, "1a2b3c4d") == (job[:-13], 3)
    assert sweep_job_slot(job, "ffffffff") is None  # another stack's sweep
    assert sweep_job_slot("ds-x-v1-1a2b3c4d-a1", "1a2b3c4d") is None


def test_the_tuning_request_is_the_runs_plan_with_the_swept_keys_left_to_the_tuner():
    run = RunContext(run_id="sw-shapes-v1-1", dataset=DatasetRef(name="shapes", version="v1"),
                     trigger=Trigger(source="cli", ref="t"), image_uri="img@sha256:1",
                     hyperparameters={"imgsz": "320", "batch": "8"}, started_at="2026-12-01T00:00:00Z")
    spec = SweepSpec(params=[parse_param("imgsz=512,640")], max_jobs=4, parallel=2, strategy="hyperband")
    req = tuning_request(run, "img@sha256:1", spec, SETTINGS, max_runtime_seconds=1200)
    d, c = req["TrainingJobDefinition"], req["HyperParameterTuningJobConfig"]
    assert "imgsz" not in d["StaticHyperParameters"] and d["StaticHyperParameters"]["batch"] == "8"
    assert d["EnableManagedSpotTraining"] is True and d["StoppingCondition"]["MaxRuntimeInSeconds"] == 1200
    assert d["CheckpointConfig"]["S3Uri"] == "s3://bkt/checkpoints/sw-shapes-v1-1/"
    assert d["RoleArn"] == "arn:aws:iam::1:role/sm"
    assert c["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}
    assert c["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "mAP50-95"}
    assert c["StrategyConfig"] == {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 30}}
