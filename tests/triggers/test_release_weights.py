"""A release's yaml block may name the run's base weights (`weights:`); they reach the run request."""

from __future__ import annotations

import pytest
from gh_helpers import Fakes, function_url_event, release_payload
from yoloops_core.github import parse_release_block
from yoloops_core.models import InvalidInput

BODY = """Fine-tune from COCO weights.

```yaml
dataset: pallets
weights: yolo12s.pt
hyperparameters:
  epochs: 30
```
"""


def test_weights_in_the_yaml_block_reach_the_run_request():
    fakes = Fakes()
    response = fakes.call(function_url_event(release_payload(body=BODY)))
    assert response.status_code == 202
    (request,) = fakes.executions.values()
    assert request["weights"] == "yolo12s.pt" and request["hyperparameters"] == {"epochs": "30"}


def test_block_without_weights_leaves_the_stack_default():
    assert parse_release_block("```yaml\ndataset: pallets\n```").weights is None
    fakes = Fakes()
    fakes.call(function_url_event(release_payload(body="```yaml\ndataset: pallets\n```")))
    (request,) = fakes.executions.values()
    assert request["weights"] is None


def test_weights_must_be_a_string():
    with pytest.raises(InvalidInput, match="weights"):
        parse_release_block("```yaml\nweights: [a, b]\n```")
