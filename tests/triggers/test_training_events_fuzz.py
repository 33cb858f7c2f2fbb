"""Property-based fuzzing of training-event parsing: any input ends in a typed outcome, never an exception."""

from __future__ import annotations

from gh_helpers import RELEASE_RUN_ID, Harness, training_event
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yoloops_core.training_events import EventOutcome

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
STATUSES = ["Starting", "Downloading", "Training", "Interrupted", "Uploading", "Completed", "Failed",
            "Stopped", "MaxWaitTimeExceeded", "MaxRuntimeExceeded", "Stopping"]


def check(outcome: EventOutcome, h: Harness) -> None:
    assert isinstance(outcome, EventOutcome)
    event(outcome.action)
    assert outcome.action in ("recorded", "duplicate", "ignored", "rejected") and outcome.reason
    if outcome.action != "recorded":
        assert not outcome.notified
    # Exactly one notice per recorded interruption, whatever came before.
    assert len(h.notes) == sum(r["interruptions"] for r in h.store.runs.values())


@FUZZ
@given(st.one_of(json_values, st.dictionaries(
    st.sampled_from(["version", "id", "detail-type", "source", "account", "time", "region", "resources",
                     "detail"]), json_values)))
def test_any_event_shape_is_answered(raw):
    h = Harness()
    check(h(raw), h)


@FUZZ
@given(overrides=st.dictionaries(
    st.sampled_from(["TrainingJobName", "TrainingJobStatus", "SecondaryStatus", "LastModifiedTime",
                     "SecondaryStatusTransitions", "FinalMetricDataList"]), json_values, max_size=3),
       envelope=st.dictionaries(st.sampled_from(["time", "id", "resources", "source"]), json_values, max_size=2))
def test_mutated_state_change_events_never_crash(overrides, envelope):
    h = Harness()
    base = training_event(f"{RELEASE_RUN_ID}-a1", "InProgress", "Interrupted",
                          ["Starting", "Downloading", "Training", "Interrupted"])
    base["detail"].update(overrides)
    base.update(envelope)
    check(h(base), h)


@FUZZ
@given(steps=st.lists(st.tuples(st.integers(1, 3), st.lists(st.sampled_from(STATUSES), min_size=1, max_size=8)),
                      min_size=1, max_size=8),
       job=st.sampled_from([f"{RELEASE_RUN_ID}-a1", "gh-other-a1", "foreign", "x-a99", "-a1"]))
def test_any_sequence_of_transitions_with_resends_notifies_once_per_interruption(steps, job):
    h = Harness()
    for attempt, transitions in steps + steps:  # every event delivered twice
        name = job.replace("-a1", f"-a{attempt}")
        ev = training_event(name, "InProgress", transitions[-1], transitions)
        check(h(ev), h)
