"""Create-time SageMaker errors as AWS's Step Functions names them, and the retry decision on them.

On AWS a Catch sees `SageMaker.ResourceLimitExceededException` (modeled errors, named after the SDK
exception) or `SageMaker.AmazonSageMakerException` with the code only in the Cause; `SageMaker.<Code>`
never arrives, so a decision keyed on it alone would never match.
"""

from __future__ import annotations

import pytest
from yoloops_core.steps import StepError, api_error_code, failure_reason, is_retriable

from yoloops.local.moto_patches import sfn_error_name


def cause(code: str, message: str = "message") -> str:
    return (f"{message} (Service: AmazonSageMaker; Status Code: 400; Error Code: {code}; "
            "Request ID: 6f8e0a52-7c1b-4d7e-9a43-1b2c3d4e5f60; Proxy: null)")


@pytest.mark.parametrize("code, name", [
    ("ResourceLimitExceeded", "SageMaker.ResourceLimitExceededException"),
    ("ResourceInUse", "SageMaker.ResourceInUseException"),
    ("ValidationException", "SageMaker.AmazonSageMakerException"),
    ("ThrottlingException", "SageMaker.AmazonSageMakerException"),
    ("InternalFailure", "SageMaker.AmazonSageMakerException"),
])
def test_the_emulation_names_errors_as_aws_does(code, name):
    assert sfn_error_name(code) == name


@pytest.mark.parametrize("code, retriable", [
    ("ThrottlingException", True), ("InternalFailure", True), ("ServiceUnavailable", True),
    ("ValidationException", False), ("ResourceLimitExceeded", False), ("ResourceInUse", False),
])
def test_the_retry_decision_reads_the_code_from_the_names_aws_sends(code, retriable):
    # A neutral message, so only the name and the code inside the Cause can decide.
    error = StepError(Error=sfn_error_name(code), Cause=cause(code, "request failed"))
    assert api_error_code(error) == code
    assert is_retriable(error) is retriable


def test_the_code_comes_from_the_name_when_the_cause_has_none():
    assert api_error_code(StepError(Error="SageMaker.ResourceLimitExceededException", Cause="quota")) == \
        "ResourceLimitExceeded"
    assert api_error_code(StepError(Error="SageMaker.AmazonSageMakerException", Cause="no code")) is None
    assert api_error_code(StepError(Error="States.TaskFailed", Cause=cause("ThrottlingException"))) is None


@pytest.mark.parametrize("fixture, retriable, code", [
    ("stepfn_training_failed_resource_limit.json", False, "ResourceLimitExceeded"),
    ("stepfn_training_failed_throttled.json", True, "ThrottlingException"),
    ("stepfn_training_failed_validation.json", False, "ValidationException"),
])
def test_fixtures_carry_aws_names(event, fixture, retriable, code):
    error = StepError.model_validate(event(fixture)["error"])
    assert error.error in ("SageMaker.ResourceLimitExceededException", "SageMaker.AmazonSageMakerException")
    assert api_error_code(error) == code and is_retriable(error) is retriable
    assert failure_reason(error).startswith(error.error + ": ")
