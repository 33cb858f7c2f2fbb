"""Pricing, budget gate arithmetic, cost accounting and the training plan."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from yoloops_core import budget, pricing
from yoloops_core.metrics import METRIC_DEFINITIONS
from yoloops_core.models import ChampionRef, RunContext
from yoloops_core.plan import build_plan, first_attempt

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_price_table_covers_the_documented_families():
    for family in ("ml.g4dn.", "ml.g5.", "ml.g6.", "ml.m5.", "ml.c5."):
        assert any(k.startswith(family) for k in pricing.HOURLY_PRICE_USD), family
    assert "ml.p4d.24xlarge" in pricing.HOURLY_PRICE_USD and "ml.p5.48xlarge" in pricing.HOURLY_PRICE_USD
    assert all(v > 0 for v in pricing.HOURLY_PRICE_USD.values())


def test_unknown_instance_type_is_a_clear_error_and_override_wins():
    with pytest.raises(pricing.UnknownInstanceType, match=r"ml\.x9\.huge.*HOURLY_PRICE_OVERRIDE_USD"):
        pricing.hourly_price("ml.x9.huge")
    assert pricing.hourly_price("ml.x9.huge", override_usd=2.0) == 2.0
    assert pricing.hourly_price("ml.g5.xlarge", override_usd=0.5) == 0.5


def test_worst_case_and_job_cost():
    # 2 h x 2 instances x $1.408
    assert budget.worst_case_cost("ml.g5.xlarge", 2, 7200) == pytest.approx(5.632)
    assert budget.job_cost(1800, "ml.g5.xlarge", 1) == pytest.approx(0.704)
    assert budget.billable_seconds({"BillableTimeInSeconds": 120, "TrainingTimeInSeconds": 400}) == 120
    assert budget.billable_seconds({"TrainingTimeInSeconds": 400}) == 400
    assert budget.billable_seconds({"message": "x"}) == 0 and budget.billable_seconds(None) == 0


def test_plan_holds_create_training_job_fields(event, settings_factory):
    run = RunContext.model_validate(event("stepfn_check_budget_ok.json")["run"])
    s = settings_factory(wandb_secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:wandb", max_runtime_seconds=3600,
                         default_epochs=50)
    plan = build_plan(run, "img:1", s)
    assert plan["algorithm_specification"] == {"TrainingImage": "img:1", "TrainingInputMode": "File",
                                               "MetricDefinitions": METRIC_DEFINITIONS}
    # Defaults merged with the run's overrides, every value a string.
    # The bundle's model.json names the version and the base weights (none: from the YAML).
    assert plan["hyperparameters"] == {"model": "yolo11n.yaml", "epochs": "30", "imgsz": "640",
                                       "dataset_version": "2026-11-28", "base_weights": ""}
    assert [c["ChannelName"] for c in plan["input_data_config"]] == ["train"]  # no champion: nothing to pair
    assert plan["input_data_config"][0]["ChannelName"] == "train"
    assert plan["input_data_config"][0]["DataSource"]["S3DataSource"]["S3Uri"] == \
        "s3://yoloops-artifacts-test/datasets/pallets/2026-11-28/"
    assert plan["output_data_config"] == {"S3OutputPath": f"s3://yoloops-artifacts-test/runs/{run.run_id}/output/"}
    assert plan["stopping_condition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert plan["use_spot"] is True
    assert plan["checkpoint_config"] == {"S3Uri": f"s3://yoloops-artifacts-test/checkpoints/{run.run_id}/",
                                         "LocalPath": "/opt/ml/checkpoints"}
    assert plan["environment"] == {"WANDB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:wandb"}
    assert {"Key": "yoloops:run-id", "Value": run.run_id} in plan["tags"]
    assert first_attempt(run.run_id).job_name == f"{run.run_id}-a1"


def test_plan_on_demand_has_no_max_wait_and_zip_channel(event, settings_factory):
    data = event("stepfn_check_budget_ok.json")["run"]
    run = RunContext.model_validate(dict(data, dataset=dict(data["dataset"], format="zip")))
    plan = build_plan(run, "img", settings_factory(use_spot=False))
    assert plan["stopping_condition"] == {"MaxRuntimeInSeconds": 3600}
    assert plan["environment"] == {}
    assert plan["input_data_config"][0]["DataSource"]["S3DataSource"]["S3Uri"].endswith(
        "datasets/pallets/2026-11-28.zip")
    # A max wait not above the runtime is raised so SageMaker accepts the spot job.
    spot = build_plan(run, "img", settings_factory(max_wait_seconds=600, max_runtime_seconds=3600))
    assert spot["stopping_condition"]["MaxWaitTimeInSeconds"] > 3600


def test_stack_default_hyperparameters_sit_between_built_ins_and_run_overrides(event, settings_factory):
    run = RunContext.model_validate(event("stepfn_check_budget_ok.json")["run"])  # overrides epochs, imgsz
    s = settings_factory(default_hyperparameters='{"epochs": 8, "imgsz": 64, "optimizer": "SGD"}')
    assert build_plan(run, "img", s)["hyperparameters"] == {
        "model": "yolo11n.yaml", "epochs": "30", "imgsz": "640", "optimizer": "SGD",
        "dataset_version": "2026-11-28", "base_weights": ""}


def test_plan_hands_the_champion_to_the_job(event, settings_factory):
    """The champion the run recorded at validation is the job's `champion` channel, by its immutable key."""
    run = RunContext.model_validate(event("stepfn_check_budget_ok.json")["run"])
    run.champion = ChampionRef(run_id="ds-pallets-aa-1111", model_key="models/pallets/versions/ds-pallets-aa-1111/best.pt",
                               metric="mAP50-95", metric_value=0.4)
    plan = build_plan(run, "img:1", settings_factory())
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in plan["input_data_config"]}
    assert channels["champion"] == "s3://yoloops-artifacts-test/models/pallets/versions/ds-pallets-aa-1111/best.pt"
    assert plan["hyperparameters"]["champion_run_id"] == "ds-pallets-aa-1111"
    # Weights missing at validation: no channel (SageMaker would fail on an empty prefix), no pairing.
    run.champion = ChampionRef(run_id="ds-pallets-aa-1111", model_key=None, missing_reason="gone")
    plan = build_plan(run, "img:1", settings_factory())
    assert [c["ChannelName"] for c in plan["input_data_config"]] == ["train"]
    assert "champion_run_id" not in plan["hyperparameters"]
