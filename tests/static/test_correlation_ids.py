"""Every function's log lines carry the run id as powertools' correlation_id (docs/architecture.md "Logs")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Handlers whose domain function sets the correlation id once it knows the run (logger.set_correlation_id).
SET_IN_DOMAIN = {"github_webhook": "yoloops_core/github.py", "training_events": "yoloops_core/training_events.py",
                 "reconcile": None, "slack_interactions": "yoloops_core/slack_interactions.py"}
# No single run to name: these handle many runs per invocation and log run_id per line instead.
MANY_RUNS = {"s3_trigger": "an SQS batch of S3 events from many uploads",
             "watchdog": "a scheduled sweep over every run in flight",
             "refresh_prices": "a scheduled price refresh, no run",
             "image_pushed": "one push wakes every run waiting for that tag (run_id per line)"}


def handlers() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))


@pytest.mark.parametrize("name", handlers())
def test_every_handler_sets_the_run_id_as_correlation_id(name):
    source = (ROOT / "functions" / name / "app.py").read_text()
    if name in MANY_RUNS:
        return
    if "correlation_id_path=" in source or "set_correlation_id(" in source:
        return
    domain = SET_IN_DOMAIN.get(name)
    assert domain, f"functions/{name}/app.py sets no correlation id (and is not listed with a reason)"
    assert "correlate(logger, run_id)" in (ROOT / "layers" / "yoloops" / domain).read_text()


def test_the_paths_point_at_the_run_id_of_a_real_fixture():
    from aws_lambda_powertools.utilities import jmespath_utils

    for name, fixture in [("check_image", "stepfn_check_image_first_poll.json"),
                          ("notify", "stepfn_notify_promoted.json")]:
        path = re.search(r'correlation_id_path="([^"]+)"', (ROOT / "functions" / name / "app.py").read_text())[1]
        event = json.loads((ROOT / "events" / fixture).read_text())
        found = jmespath_utils.query(envelope=path, data=event)
        assert isinstance(found, str) and found.startswith(("ds-", "gh-", "cli-")), (name, found)


def test_a_training_event_logs_with_its_run_as_correlation_id(capfd):
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "triggers"))
    from aws_lambda_powertools import Logger
    from gh_helpers import RELEASE_RUN_ID, Harness, training_event
    from yoloops_core import training_events

    parent = Logger(service=training_events.logger.service)  # what the handler module creates
    Harness()(training_event(f"{RELEASE_RUN_ID}-a1", "InProgress", "Training", ["Starting", "Training"]))
    lines = [json.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    recorded = [line for line in lines if line.get("message") == "training transition recorded"]
    assert recorded and all(line.get("correlation_id") == RELEASE_RUN_ID for line in recorded)
    parent.set_correlation_id(None)
