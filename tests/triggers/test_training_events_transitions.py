"""Interruptions are counted from the whole SecondaryStatusTransitions list of each event, not from
the event's current status: one event can carry several transitions, hiding an `Interrupted`."""

from __future__ import annotations

from gh_helpers import RELEASE_RUN_ID, Harness, training_event
from yoloops_core.training_events import TrainingJobDetail, interruption_keys

RAN = ["Starting", "Downloading", "Training"]
JOB = f"{RELEASE_RUN_ID}-a1"


def test_an_interruption_hidden_behind_a_later_status_is_counted_and_notified():
    h = Harness()
    # SageMaker coalesced: the only event seen is already back to Training after an interruption.
    outcome = h(training_event(JOB, "InProgress", "Training", [*RAN, "Interrupted", "Starting", "Training"]))
    assert outcome.action == "recorded" and outcome.notified
    run = h.store.runs[RELEASE_RUN_ID]
    assert run["interruptions"] == 1 and run["interruptions_by_attempt"] == {"1": 1}
    assert run["last_secondary_status"] == "Training" and len(h.notes) == 1


def test_two_interruptions_in_one_event_are_two_notices():
    h = Harness()
    h(training_event(JOB, "InProgress", "Training",
                     [*RAN, "Interrupted", "Starting", "Training", "Interrupted", "Starting", "Training"]))
    assert h.store.runs[RELEASE_RUN_ID]["interruptions"] == 2 and len(h.notes) == 2
    assert "interruption 2; 2 in this run" in h.notes[1].text


def test_each_interruption_counts_once_across_every_event_that_repeats_it():
    h = Harness()
    lists = [[*RAN, "Interrupted"], [*RAN, "Interrupted", "Starting"], [*RAN, "Interrupted", "Starting", "Training"],
             [*RAN, "Interrupted", "Starting", "Training", "Interrupted"]]
    for transitions in lists:
        h(training_event(JOB, "InProgress", transitions[-1], transitions))
    assert h.store.runs[RELEASE_RUN_ID]["interruptions"] == 2 and len(h.notes) == 2


def test_stopping_and_stopped_transitions_are_statuses_not_interruptions():
    h = Harness()
    h(training_event(JOB, "Stopping", "Stopping", [*RAN, "Stopping"]))
    h(training_event(JOB, "Stopped", "Stopped", [*RAN, "Stopping", "Stopped"]))
    run = h.store.runs[RELEASE_RUN_ID]
    assert run["interruptions"] == 0 and h.notes == [] and run["last_secondary_status"] == "Stopped"


def test_interruption_keys():
    detail = TrainingJobDetail.model_validate(training_event(JOB, "InProgress", "Training",
                                                             [*RAN, "Interrupted", "Training"])["detail"])
    (key,) = interruption_keys(detail)
    assert key.startswith(f"{JOB}|Interrupted|#3@")
    bare = TrainingJobDetail.model_validate({"TrainingJobName": JOB, "TrainingJobStatus": "InProgress",
                                             "SecondaryStatus": "Interrupted", "LastModifiedTime": 5})
    assert interruption_keys(bare) == [f"Interrupted|{JOB}|InProgress|Interrupted|m5"]
