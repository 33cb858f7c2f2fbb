"""Retrain/retry ids and the overrides allow-list (yoloops_core.rerun, yoloops_core.hyperparameters)."""

from __future__ import annotations

import pytest
from yoloops_core.hyperparameters import check_overrides, parse_assignments
from yoloops_core.models import (
    DatasetRef,
    InvalidInput,
    RunRequest,
    job_name,
    run_id_for_dataset,
    run_id_for_release,
)
from yoloops_core.rerun import check_request, rerun_id, root_run_id
from yoloops_core.run_ids import MAX_RUN_ID_LENGTH, STACK_CODE_LENGTH

LONG = DatasetRef(name="n" * 63, version="v" * 63)


def _request(source="retrain", ref="ds-shapes-v1-aaaaaaaa-bbbbbbbb", **kw):
    return RunRequest(dataset={"name": "shapes", "version": "v1"}, trigger={"source": source, "ref": ref}, **kw)


def test_rerun_ids_say_what_they_are_and_never_chain():
    ds = run_id_for_dataset(DatasetRef(name="shapes", version="v1"), "c0ffee00")
    assert rerun_id(ds, "retrain", 1) == f"{ds}-t1" and rerun_id(ds, "retry", 2) == f"{ds}-y2"
    assert rerun_id(f"{ds}-t3", "retry", 1) == f"{ds}-y1"  # a retry of a retrain: the root's, not -t3-y1
    gh = run_id_for_release("acme/robot", "v1.0", 7, retry=2)
    assert root_run_id(gh) == run_id_for_release("acme/robot", "v1.0", 7)
    assert root_run_id(ds) == ds  # an 8-character hash segment is never taken for a suffix


def test_the_longest_rerun_id_still_fits_the_job_name_budget():
    for original in (run_id_for_dataset(LONG, "f" * 64), run_id_for_release("o" * 90 + "/" + "r" * 90, "t" * 128, 1)):
        longest = rerun_id(original, "retrain", 99)
        assert len(longest) <= MAX_RUN_ID_LENGTH
        assert len(job_name(longest, 10, "0" * STACK_CODE_LENGTH)) <= 63


def test_overrides_take_the_release_allow_list_and_name_what_is_wrong():
    assert check_overrides({"epochs": 150, "imgsz": 960, "lr0": 1, "cos_lr": True}) == \
        {"epochs": "150", "imgsz": "960", "lr0": "1.0", "cos_lr": "true"}
    with pytest.raises(InvalidInput, match=r"workers is not a hyperparameter that can be set \(allowed: model, epochs"):
        check_overrides({"workers": 8})
    with pytest.raises(InvalidInput, match=r"imgsz=8: Input should be greater than or equal to 32"):
        check_overrides({"imgsz": 8})
    with pytest.raises(InvalidInput, match=r"epochs='150': Input should be a valid integer"):
        check_overrides({"epochs": "150"})  # typed as in a yaml block: a JSON string is not a number


def test_set_options_read_like_yaml_scalars():
    assert parse_assignments(["epochs=150", "lr0=1e-3", "cos_lr=True", "optimizer=AdamW", "model=yolo11s.yaml"]) == \
        {"epochs": 150, "lr0": 0.001, "cos_lr": True, "optimizer": "AdamW", "model": "yolo11s.yaml"}
    with pytest.raises(InvalidInput, match="'epochs' is not KEY=VALUE"):
        parse_assignments(["epochs"])


def test_a_request_is_checked_as_the_workflow_checks_it():
    original = "ds-shapes-v1-aaaaaaaa-bbbbbbbb"
    req = _request(hyperparameters={"epochs": "10", "imgsz": "640"}, overrides={"epochs": 3})
    assert check_request(f"{original}-t4", req) == {"epochs": "3", "imgsz": "640"}  # overrides win
    with pytest.raises(InvalidInput, match=f"must be named {original}-t1"):
        check_request("my-own-name", req)
    with pytest.raises(InvalidInput, match=f"must be named {original}-y1"):
        check_request(f"{original}-t1", _request("retry"))
    # Any other trigger keeps its own naming; its overrides are checked all the same.
    with pytest.raises(InvalidInput, match="mosaicc is not a hyperparameter"):
        check_request("anything", _request("manual", overrides={"mosaicc": 0.5}))
