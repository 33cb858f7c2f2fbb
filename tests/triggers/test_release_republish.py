"""A release re-published after its run died waiting for the image starts a new run; otherwise one run."""

from __future__ import annotations

import dataclasses

import boto3
import support
from gh_helpers import WEBHOOK_RUN_ID, Fakes, function_url_event, release_payload
from moto import mock_aws
from yoloops_core.github import _image_never_came
from yoloops_core.models import RunStatus
from yoloops_core.store import RunStore


def _published(at: str) -> dict:
    payload = release_payload()
    payload["release"]["published_at"] = at  # publishing again (e.g. after an unpublish) sets a new time
    return payload


def test_republish_after_image_not_found_retries_with_a_suffix_and_then_dedupes():
    fakes = Fakes()
    failed: dict[str, str] = {}
    fakes.deps = dataclasses.replace(fakes.deps, image_never_came=lambda run_id: failed.get(run_id) == "ImageNotFound")
    first = release_payload()["release"]["published_at"]
    assert fakes.call(function_url_event(_published(first), delivery="d1")).status_code == 202
    # Redelivered, or published again while the first run is fine: the same run, nothing new.
    fakes.call(function_url_event(_published(first), delivery="d2"))
    assert fakes.call(function_url_event(_published(first.replace(":15:", ":16:")), delivery="d3")).status_code == 200
    assert list(fakes.executions) == [WEBHOOK_RUN_ID]
    failed[WEBHOOK_RUN_ID] = "ImageNotFound"  # CI was late: the run gave up on the image
    response = fakes.call(function_url_event(_published(first.replace(":15:", ":17:")), delivery="d4"))
    assert response.status_code == 202
    assert list(fakes.executions) == [WEBHOOK_RUN_ID, WEBHOOK_RUN_ID + "-r2"]
    assert fakes.call(function_url_event(_published(first.replace(":15:", ":18:")), delivery="d5")).status_code == 200
    assert len(fakes.executions) == 2


def test_another_failure_is_not_retried_by_a_republish():
    fakes = Fakes()
    fakes.deps = dataclasses.replace(fakes.deps, image_never_came=lambda run_id: False)
    fakes.call(function_url_event(_published("2026-11-28T09:15:40Z"), delivery="d1"))
    fakes.call(function_url_event(_published("2026-11-28T09:16:40Z"), delivery="d2"))
    assert list(fakes.executions) == [WEBHOOK_RUN_ID]


def test_a_new_release_reusing_the_tag_is_a_new_run():
    fakes = Fakes()
    fakes.call(function_url_event(release_payload(), delivery="d1"))
    other = release_payload()
    other["release"]["id"] += 1
    fakes.call(function_url_event(other, delivery="d2"))
    # Run ids keep 50 characters since job names carry the stack code: the readable slug is cut, the hashes stay.
    assert len(fakes.executions) == 2 and all(r.startswith("gh-acme-robotics-pallet-") and len(r) <= 50
                                              for r in fakes.executions)


def test_image_never_came_reads_the_run_record():
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        support.create_runs_table(ddb, "runs")
        store = RunStore("runs", ddb)
        assert not _image_never_came(store, "gh-x")
        for run_id, reason in (("gh-a", "ImageNotFound: image r:v1 never appeared in ECR"), ("gh-b", "AlgorithmError")):
            ddb.put_item(TableName="runs", Item={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"},
                                                 "run_id": {"S": run_id}, "status": {"S": RunStatus.FAILED.value},
                                                 "failure_reason": {"S": reason}})
        assert _image_never_came(store, "gh-a") and not _image_never_came(store, "gh-b")
