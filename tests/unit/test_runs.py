"""start_run: the execution name is the run id, so a repeated trigger starts nothing new."""

from datetime import UTC, datetime, timedelta

import pytest
from yoloops_core.models import DatasetRef, RunRequest, Trigger
from yoloops_core.runs import start_run

REQUEST = RunRequest(dataset=DatasetRef(name="robots", version="v1"), trigger=Trigger(source="cli", ref="me"))


class ClientError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class FakeSfn:
    def __init__(self, start_date=None, error=None):
        self.calls, self.start_date, self.error = [], start_date, error

    def start_execution(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise ClientError(self.error)
        return {"executionArn": "arn:exec:" + kwargs["name"], "startDate": self.start_date or datetime.now(UTC)}


def test_new_run_starts_with_run_id_as_execution_name():
    sfn = FakeSfn()
    result = start_run(REQUEST, "ds-robots-v1", "arn:sm", sfn)
    assert result.started and result.execution_arn == "arn:exec:ds-robots-v1"
    assert sfn.calls[0]["name"] == "ds-robots-v1" and '"robots"' in sfn.calls[0]["input"]


def test_same_input_returning_the_existing_execution_is_a_duplicate():
    sfn = FakeSfn(start_date=datetime.now(UTC) - timedelta(minutes=3))
    result = start_run(REQUEST, "ds-robots-v1", "arn:sm", sfn)
    assert not result.started and result.execution_arn == "arn:exec:ds-robots-v1"


def test_execution_already_exists_is_a_duplicate():
    assert not start_run(REQUEST, "ds-robots-v1", "arn:sm", FakeSfn(error="ExecutionAlreadyExists")).started


def test_other_errors_raise_so_the_trigger_retries():
    with pytest.raises(ClientError):
        start_run(REQUEST, "ds-robots-v1", "arn:sm", FakeSfn(error="ThrottlingException"))
