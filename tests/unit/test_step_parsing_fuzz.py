"""Property-based fuzzing of the workflow-step handlers' parsing.

Whatever the state machine (or a person with `aws lambda invoke`) sends: each step either parses it or
rejects it with InvalidInput naming a field, which the ASL Catch turns into a failure notification;
and Notify, the state every failure goes through, accepts anything and still notifies.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from yoloops_core.evaluate import EvaluateEvent
from yoloops_core.gate import CheckBudgetEvent
from yoloops_core.models import InvalidInput, parse_model
from yoloops_core.outcomes import notify
from yoloops_core.promote import PromoteEvent
from yoloops_core.steps import TrainingFailedEvent, ValidateDatasetEvent

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
STEP_KEYS = ["run_id", "execution_arn", "request", "run", "image", "attempt", "error", "training", "evaluation",
             "dataset", "trigger", "outcome", "state"]
step_like = st.dictionaries(st.sampled_from(STEP_KEYS), json_values, max_size=6)
STEP_MODELS = [ValidateDatasetEvent, CheckBudgetEvent, TrainingFailedEvent, EvaluateEvent, PromoteEvent]


@pytest.mark.parametrize("model", STEP_MODELS, ids=lambda m: m.__name__)
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=json_values | step_like)
def test_step_input_parses_or_is_rejected_naming_the_problem(model, data):
    try:
        parse_model(model, data, f"{model.__name__} input")
    except InvalidInput as exc:
        assert str(exc).startswith(f"invalid {model.__name__} input: ")


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=json_values | st.fixed_dictionaries({"outcome": json_values, "run_id": json_values, "state": json_values}))
def test_notify_accepts_any_state_and_always_publishes_one_message(event, settings, store, sns):
    before = len(sns.messages)
    out = notify(event, settings=settings, store=store, sns=sns)
    assert len(sns.messages) == before + 1
    assert json.dumps(out)  # the ASL gets a JSON result back
