"""A training job of a SageMaker hyperparameter tuning job gets keys the tuner adds; the job accepts them."""

from __future__ import annotations

import pytest


def test_keys_a_tuning_job_adds_are_accepted_and_the_ranges_apply():
    from yoloops_train.config import parse_hyperparameters

    cfg = parse_hyperparameters({"lr0": "0.0031", "imgsz": "640", "epochs": "2",
                                 "_tuning_objective_metric": "mAP50-95", "sagemaker_estimator_module": "x"})
    assert cfg.lr0 == pytest.approx(0.0031) and cfg.imgsz == 640


def test_other_unknown_keys_still_fail_the_job():
    from yoloops_train.common import JobFailure
    from yoloops_train.config import parse_hyperparameters

    with pytest.raises(JobFailure, match="_lr_typo"):
        parse_hyperparameters({"_lr_typo": "1"})
