"""The local stack: the whole pipeline on one machine, no AWS account (moto + in-process Lambdas)."""

from yoloops.local.stack import LocalStack
from yoloops.local.training import (
    Outcome,
    ProcessTrainingBackend,
    SageMakerApiError,
    ScriptedTrainingBackend,
    TrainingBackend,
    capacity_error,
    complete,
    fail,
    spot_max_wait_exceeded,
)

__all__ = [
    "LocalStack",
    "Outcome",
    "ProcessTrainingBackend",
    "SageMakerApiError",
    "ScriptedTrainingBackend",
    "TrainingBackend",
    "capacity_error",
    "complete",
    "fail",
    "spot_max_wait_exceeded",
]
