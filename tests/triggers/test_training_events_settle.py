"""A job's end (Completed, Failed, Stopped) settles its reservation on its own state-change event."""

from __future__ import annotations

import dataclasses

import pytest
from gh_helpers import RELEASE_RUN_ID, Harness, training_event, with_new_event_id

RAN = ["Starting", "Downloading", "Training"]


def _harness(calls: list, error: Exception | None = None) -> Harness:
    h = Harness()

    def settle(run_id, attempt, detail):
        calls.append((run_id, attempt, detail["TrainingJobStatus"]))
        if error is not None:
            raise error
        return object()

    h.deps = dataclasses.replace(h.deps, settle=settle)
    return h


@pytest.mark.parametrize("status", ["Completed", "Failed", "Stopped"])
def test_every_kind_of_end_settles_the_attempt(status):
    calls: list = []
    h = _harness(calls)
    h(training_event(f"{RELEASE_RUN_ID}-a2", status, status, [*RAN, status]))
    assert calls == [(RELEASE_RUN_ID, 2, status)]


def test_running_transitions_settle_nothing_and_resends_settle_again_idempotently():
    calls: list = []
    h = _harness(calls)
    for secondary in ("Starting", "Training", "Stopping"):
        status = "Stopping" if secondary == "Stopping" else "InProgress"
        h(training_event(f"{RELEASE_RUN_ID}-a1", status, secondary, RAN))
    assert calls == []
    ended = training_event(f"{RELEASE_RUN_ID}-a1", "Stopped", "Stopped", [*RAN, "Stopping", "Stopped"])
    h(ended)
    # A re-send is a duplicate transition but still asks the ledger (which settles once): a first
    # delivery whose settle failed is finished by the retry.
    assert h(with_new_event_id(ended, "again")).action == "duplicate"
    assert len(calls) == 2


def test_a_failed_settle_raises_so_eventbridge_retries_it():
    h = _harness([], error=RuntimeError("ProvisionedThroughputExceeded"))
    with pytest.raises(RuntimeError):
        h(training_event(f"{RELEASE_RUN_ID}-a1", "Completed", "Completed", [*RAN, "Completed"]))


def test_events_of_jobs_without_a_run_record_settle_nothing():
    calls: list = []
    h = _harness(calls)
    h(training_event("ds-someone-elses-run-a1", "Completed", "Completed", [*RAN, "Completed"]))
    assert calls == []
