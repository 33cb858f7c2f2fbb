"""A training image that cannot use the instance's GPU fails for good: never retried, never a spot failure.

The container's line (training_container/yoloops_train/host.py) starts with "GpuUnavailable:"; SageMaker
hands it back as FailureReason, behind "AlgorithmError: " on AWS and bare on the local stack.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from yoloops_core.final_failures import final_failure
from yoloops_core.steps import StepError, TrainingFailedEvent, is_retriable, is_spot_failure, training_failed

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
LINE = ("GpuUnavailable: the NVIDIA driver 470.256.02 is too old for this image's CUDA 13.0 (needs driver >= 580); "
        "torch sees no GPU (CUDA initialization: insufficient capacity to initialize the driver). Fix: ...")


@pytest.mark.parametrize("reason", [f"AlgorithmError: {LINE}, exit code: 2", LINE])
def test_a_gpu_unavailable_job_is_final_even_where_its_words_look_transient(reason):
    # torch's own words in the line ("insufficient capacity") must not turn it into a capacity retry
    err = StepError(Error="States.TaskFailed", Cause=json.dumps({"TrainingJobStatus": "Failed",
                                                                 "SecondaryStatus": "Failed",
                                                                 "FailureReason": reason}))
    assert final_failure(reason) == "GpuUnavailable"
    assert is_retriable(err) is False and is_spot_failure(err) is False
    plain = StepError(Error="States.TaskFailed", Cause=json.dumps({
        "FailureReason": "InternalServerError: insufficient capacity to initialize the driver"}))
    assert is_retriable(plain) is True  # the same words without the prefix: what the prefix overrides


def test_the_run_stops_at_its_first_attempt_and_says_why(event, settings, store, ledger):
    ev = TrainingFailedEvent.model_validate(event("stepfn_training_failed_gpu_unavailable.json"))
    store.create_run(ev.run)
    store.record_job(ev.run.run_id, ev.attempt.number, ev.attempt.job_name)
    assert settings.max_attempts > 1
    out = training_failed(ev, settings=settings, store=store, ledger=ledger, now=NOW)
    assert out["retry"] is False and out["number"] == 1
    assert out["reason"].startswith("AlgorithmError: GpuUnavailable: the NVIDIA driver 535.104.12 is too old")
    assert out["reason"].endswith("[final (GpuUnavailable): a new attempt meets the same host]")
    record = store.get_run(ev.run.run_id)
    assert not record.get("spot_failures_by_attempt")  # the next run is not pushed to on-demand either
    assert record["failure_reason"].startswith("AlgorithmError: GpuUnavailable:")
