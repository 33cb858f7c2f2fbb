"""Approval decisions against DynamoDB (moto): one decision per approval, whoever is first; a decision that
finds the wait already over changes nothing in the workflow and says so."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from support import create_runs_table
from yoloops_core.approval import ApprovalNotPending, ApprovalStore, decide


class Sfn:
    def __init__(self, ended: bool = False):
        self.calls: list[tuple[str, dict]] = []
        self.ended = ended

    def _call(self, name, kwargs):
        self.calls.append((name, kwargs))
        if self.ended:
            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "Task Timed Out"}}, name)
        return {}

    def send_task_success(self, **kwargs):
        return self._call("success", kwargs)

    def send_task_failure(self, **kwargs):
        return self._call("failure", kwargs)


class Store:
    def __init__(self):
        self.updates: list[dict] = []

    def get_run(self, run_id):
        return {"run_id": run_id, "dataset": "shapes", "dataset_version": "v1"}

    def update_run(self, run_id, **kwargs):
        self.updates.append(kwargs)


@pytest.fixture
def approvals():
    with mock_aws():
        import boto3

        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_runs_table(ddb, "runs")
        yield ApprovalStore("runs", ddb=ddb)


def test_the_first_decision_wins_and_a_second_is_refused_naming_the_first(approvals):
    approvals.park("ds-a-v1-1", "train", "token-1", 3600)
    sfn = Sfn()
    first = decide("ds-a-v1-1", False, "@bob (U2) in Slack", approvals=approvals, store=Store(), sfn=sfn,
                   reason="too big")
    assert first.decision == "rejected" and first.stage == "train"
    assert sfn.calls == [("failure", {"taskToken": "token-1", "error": "ApprovalRejected",
                                      "cause": "train rejected by @bob (U2) in Slack: too big"})]
    with pytest.raises(ApprovalNotPending, match=r"train rejected by @bob \(U2\) in Slack"):
        decide("ds-a-v1-1", True, "cli user alice", approvals=approvals, store=Store(), sfn=sfn)
    assert len(sfn.calls) == 1  # the token was handed back once
    # A re-invoked request step never reopens a decided approval.
    assert approvals.park("ds-a-v1-1", "train", "token-1", 3600) is False
    assert approvals.get("ds-a-v1-1", "train")["status"] == "rejected"


def test_a_decision_after_the_wait_ended_is_refused_and_recorded_as_expired(approvals):
    approvals.park("ds-a-v1-1", "promote", "token-2", 60)
    store = Store()
    with pytest.raises(ApprovalNotPending, match="wait had already ended"):
        decide("ds-a-v1-1", True, "cli user alice", approvals=approvals, store=store, sfn=Sfn(ended=True))
    assert approvals.get("ds-a-v1-1", "promote")["status"] == "expired"
    assert store.updates == []  # the run record is not told it was approved


def test_nothing_to_decide_for_a_run_that_never_asked(approvals):
    with pytest.raises(ApprovalNotPending, match="never asked for one"):
        decide("ds-nope-v1-1", True, "cli user alice", approvals=approvals, store=Store(), sfn=Sfn())
