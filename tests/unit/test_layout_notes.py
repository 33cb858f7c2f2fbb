"""The dataset's layout and automatic val split reach the run's notification, and the training plan hands the
job the ValFraction the validator split with."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from yoloops_core.dataset.report import AutoSplit, DatasetReport
from yoloops_core.models import RunContext
from yoloops_core.outcomes import notify
from yoloops_core.plan import build_plan


def _report(**kw) -> dict:
    return DatasetReport(source="s3://b/datasets/fizz/", valid=True, **kw).model_dump(mode="json")


def test_a_promoted_run_says_which_layout_and_that_val_was_split(event, settings, store, sns):
    ev = copy.deepcopy(event("stepfn_notify_promoted.json"))
    ev["state"]["validation"]["report"] = _report(layout="label_studio",
                                                   auto_split=AutoSplit(fraction=0.15, train=85, val=15))
    store.create_run(RunContext.model_validate(ev["state"]["run"]))
    notify(ev, settings=settings, store=store, sns=sns, now=datetime(2026, 11, 28, 11, tzinfo=UTC))
    (msg,) = sns.messages
    assert "Label Studio YOLO export" in msg["text"]
    assert "15 of 100 images were split off to val by file-name hash (ValFraction 0.15)" in msg["text"]


def test_a_rejection_carries_the_summary_naming_prefix_layout_and_first_problems(event, settings, store, sns):
    ev = copy.deepcopy(event("stepfn_notify_rejected.json"))
    report = DatasetReport(source="s3://b/datasets/fizz/", valid=False, layout="cvat", error_count=1)
    ev["state"]["validation"]["report"] = report.model_dump(mode="json")
    store.create_run(RunContext.model_validate(ev["state"]["run"]))
    notify(ev, settings=settings, store=store, sns=sns, now=datetime(2026, 11, 28, 11, tzinfo=UTC))
    (msg,) = sns.messages
    assert "rejected" in msg["text"] and "s3://b/datasets/fizz/: REJECTED" in msg["text"]
    assert "CVAT Ultralytics YOLO export" in msg["text"]


def test_the_plan_passes_a_non_default_val_fraction_and_never_a_different_one(event, settings_factory):
    data = event("stepfn_check_budget_ok.json")["run"]
    run = RunContext.model_validate(data)
    assert "val_fraction" not in build_plan(run, "img", settings_factory())["hyperparameters"]
    assert build_plan(run, "img", settings_factory(val_fraction=0.3))["hyperparameters"]["val_fraction"] == "0.3"
    # a run asking for another fraction would train on a split the report never showed: the stack's wins
    forced = RunContext.model_validate(dict(data, hyperparameters={"val_fraction": "0.5"}))
    assert build_plan(forced, "img", settings_factory())["hyperparameters"]["val_fraction"] == "0.15"
