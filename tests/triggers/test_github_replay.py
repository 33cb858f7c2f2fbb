"""Webhook replay and secret guards: a captured signed body replayed under a new delivery id starts
nothing, stale publications are refused, and an empty secret refuses everything (forgeable HMAC)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from gh_helpers import Fakes, function_url_event, load_fixture, release_payload, sign
from yoloops_core.github import handle_webhook, signature_for, signature_matches
from yoloops_core.webhook_guards import release_age_problem, release_key

PUBLISHED = "2026-11-28T09:15:40Z"
SOON = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # 44 minutes after publication
LATE = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # 48.7 hours after


def reason_of(response) -> str:
    return response.to_lambda()["headers"].get("x-yoloops-reason", "")


def aged(fakes: Fakes, now: datetime, hours: float = 24) -> Fakes:
    fakes.deps = replace(fakes.deps, max_release_age_hours=hours, now=lambda: now)
    return fakes


def test_a_replayed_body_under_a_new_delivery_id_is_accepted_once():
    fakes = aged(Fakes(), SOON)
    first = fakes.call(function_url_event(release_payload(), delivery="d-original"))
    replayed = fakes.call(function_url_event(release_payload(), delivery="d-forged-new-id"))
    assert first.status_code == replayed.status_code == 202
    assert json.loads(first.to_lambda()["body"]) == json.loads(replayed.to_lambda()["body"])
    assert list(fakes.deliveries) == [release_key(187000001, "published", PUBLISHED, "d-original")]
    assert len(fakes.executions) == 1


def test_publishing_again_is_a_new_publication_the_execution_name_still_dedupes():
    fakes = aged(Fakes(), SOON)
    fakes.call(function_url_event(release_payload(), delivery="d-1"))
    again = release_payload()
    again["release"]["published_at"] = "2026-11-28T09:40:00Z"
    response = fakes.call(function_url_event(again, delivery="d-2"))
    assert len(fakes.deliveries) == 2  # a different signed publication
    assert response.status_code == 200 and "already started" in reason_of(response)
    assert len(fakes.executions) == 1


def test_a_stale_publication_is_refused_with_a_clear_body():
    fakes = aged(Fakes(), LATE)
    response = fakes.call(load_fixture("github_release_published.json"))
    assert response.status_code == 422
    body = json.loads(response.to_lambda()["body"])
    text = json.dumps(body)
    assert "48.7 h ago" in text and "MAX_RELEASE_AGE_HOURS=24" in text and "publish the release again" in text
    assert fakes.executions == {} and fakes.deliveries == {}


def test_the_age_limit_is_configurable():
    fakes = aged(Fakes(), LATE, hours=72)
    assert fakes.call(load_fixture("github_release_published.json")).status_code == 202


def test_a_publication_without_a_date_is_refused_when_ages_are_checked():
    payload = release_payload()
    del payload["release"]["published_at"]
    response = aged(Fakes(), SOON).call(function_url_event(payload))
    assert response.status_code == 422 and "published_at" in reason_of(response)


@pytest.mark.parametrize("value, problem", [
    (PUBLISHED, None), ("2026-11-27T09:00:00Z", "25.0 h ago"), ("yesterday", "not an ISO 8601"),
    ("2026-11-28T09:15:40", "time zone"),
])
def test_release_age_problem(value, problem):
    found = release_age_problem(value, 24, datetime(2026, 11, 28, 10, 0, tzinfo=UTC))
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize("secret", ["", "   ", "\n"])
def test_an_empty_secret_refuses_every_delivery_even_one_signed_with_it(secret):
    fakes = Fakes()
    fakes.deps = replace(fakes.deps, secret=lambda: secret)
    raw = json.dumps(release_payload()).encode()
    event = function_url_event(release_payload())
    event = copy.deepcopy(event)
    event["body"] = raw.decode()
    event["headers"]["x-hub-signature-256"] = sign(raw, secret)  # what an attacker can compute
    response = handle_webhook(event, fakes.deps)
    assert response.status_code == 500
    assert "secret is empty" in json.dumps(json.loads(response.to_lambda()["body"]))
    assert fakes.executions == {}
    assert not signature_matches(secret, raw, signature_for(secret, raw))
