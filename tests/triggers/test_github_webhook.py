"""GitHub webhook domain logic with fakes: every accept/ignore/reject path of a delivery."""

from __future__ import annotations

import copy
import json

import pytest
from gh_helpers import (
    WEBHOOK_RUN_ID,
    Fakes,
    function_url_event,
    load_fixture,
    release_payload,
    sign,
)
from yoloops_core.github import (
    DeliveryInProgress,
    WebhookDeps,
    handle_webhook,
    parse_release_block,
    signature_matches,
)
from yoloops_core.models import DatasetRef, EventType, InvalidInput


@pytest.fixture
def fakes():
    return Fakes()


def reason_of(response) -> str:
    return response.to_lambda()["headers"].get("x-yoloops-reason", "")


# ---------------------------------------------------------------- happy path

def test_published_release_starts_one_run_on_latest_dataset_with_release_image(fakes):
    response = fakes.call(load_fixture("github_release_published.json"))
    assert response.status_code == 202
    assert list(fakes.executions) == [WEBHOOK_RUN_ID]
    request = fakes.executions[WEBHOOK_RUN_ID]
    assert request["dataset"] == {"name": "pallets", "version": "2026-11-20", "format": "dir"}
    assert request["image_tag"] == "v1.4.0"
    assert request["hyperparameters"] == {}
    assert request["trigger"]["source"] == "github"
    assert request["trigger"]["ref"] == "https://github.com/acme-robotics/pallet-detector/releases/tag/v1.4.0"
    assert request["trigger"]["detail"] == {"repo": "acme-robotics/pallet-detector", "tag": "v1.4.0",
                                            "delivery": "4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a01",
                                            "sender": "mara-ops"}
    body = json.loads(response.to_lambda()["body"])
    assert body["run_id"] == WEBHOOK_RUN_ID and body["started"] is True
    assert fakes.notifications == []


def test_base64_body_is_decoded_before_the_signature_check(fakes):
    response = fakes.call(load_fixture("github_release_published_base64.json"))
    assert response.status_code == 202
    assert list(fakes.executions) == [WEBHOOK_RUN_ID]


def test_yaml_block_names_dataset_version_and_hyperparameters(fakes):
    fakes.datasets.insert(0, DatasetRef(name="pallets", version="2026-11-25"))  # newer, but not named
    response = fakes.call(load_fixture("github_release_with_yaml_block.json"))
    assert response.status_code == 202
    (request,) = fakes.executions.values()
    assert request["dataset"]["version"] == "2026-11-20"
    assert request["hyperparameters"] == {"epochs": "120", "imgsz": "640", "lr0": "0.005", "cos_lr": "true"}
    assert request["image_tag"] == "v1.4.1"


def test_yaml_block_with_dataset_name_only_takes_its_newest_version(fakes):
    body = "```yaml\ndataset: forklifts\n```"
    fakes.call(function_url_event(release_payload(body=body)))
    (request,) = fakes.executions.values()
    assert request["dataset"] == {"name": "forklifts", "version": "v3", "format": "dir"}


def test_zip_dataset_format_is_kept(fakes):
    fakes.call(function_url_event(release_payload(body="```yml\ndataset: pallets/2026-11-01\n```")))
    (request,) = fakes.executions.values()
    assert request["dataset"]["format"] == "zip"


# ---------------------------------------------------------------- exactly once

def test_redelivery_with_same_delivery_id_starts_nothing_more(fakes):
    event = load_fixture("github_release_published.json")
    first = fakes.call(event)
    again = fakes.call(copy.deepcopy(event))
    assert first.status_code == again.status_code == 202
    assert len(fakes.executions) == 1
    # Keyed on the signed publication (release id + action + published_at), not the unsigned delivery id.
    assert list(fakes.deliveries) == ["release-187000001-published-2026-11-28T09:15:40Z"]


def test_new_delivery_of_same_release_is_absorbed_by_the_execution_name(fakes):
    fakes.call(load_fixture("github_release_published.json"))
    fakes.deliveries.clear()  # the dedupe record expired: the execution name still absorbs it
    response = fakes.call(function_url_event(release_payload(), delivery="another-delivery-id"))
    assert response.status_code == 200
    assert json.loads(response.to_lambda()["body"])["started"] is False
    assert "already started" in reason_of(response)
    assert len(fakes.executions) == 1


@pytest.mark.parametrize("name", ["github_release_created.json", "github_release_released.json",
                                  "github_release_edited.json", "github_release_prereleased.json"])
def test_sibling_release_actions_start_nothing_and_say_why(fakes, name):
    event = load_fixture(name)
    action = json.loads(event["body"])["action"]
    response = fakes.call(event)
    out = response.to_lambda()
    assert out["statusCode"] == 204 and "body" not in out
    assert f"release action '{action}' starts nothing" in reason_of(response)
    assert fakes.executions == {}


def test_release_lifecycle_starts_exactly_one_run(fakes):
    for name in ["github_release_created.json", "github_release_published.json",
                 "github_release_released.json", "github_release_edited.json"]:
        fakes.call(load_fixture(name))
    assert list(fakes.executions) == [WEBHOOK_RUN_ID]


# ---------------------------------------------------------------- drafts and prereleases

def test_published_prerelease_starts_nothing_by_default(fakes):
    response = fakes.call(load_fixture("github_release_published_prerelease.json"))
    assert response.status_code == 204
    assert "prerelease" in reason_of(response) and "ALLOW_PRERELEASES" in reason_of(response)
    assert fakes.executions == {}


def test_published_prerelease_starts_a_run_when_allowed():
    fakes = Fakes(allow_prereleases=True)
    response = fakes.call(load_fixture("github_release_published_prerelease.json"))
    assert response.status_code == 202
    (request,) = fakes.executions.values()
    assert request["image_tag"] == "v1.5.0-rc.1"


@pytest.mark.parametrize("allow", [False, True])
def test_drafts_never_start_a_run(allow):
    fakes = Fakes(allow_prereleases=allow)
    response = fakes.call(load_fixture("github_release_draft.json"))
    assert response.status_code == 204 and "draft" in reason_of(response)
    assert fakes.executions == {}


# ---------------------------------------------------------------- authentication

def test_missing_signature_is_401_and_starts_nothing(fakes):
    event = load_fixture("github_release_published.json")
    del event["headers"]["x-hub-signature-256"]
    response = fakes.call(event)
    assert response.status_code == 401 and "missing" in reason_of(response)
    assert fakes.executions == {}


def test_forged_signature_is_401_and_starts_nothing(fakes):
    event = function_url_event(release_payload(), secret="an attacker's guess")
    response = fakes.call(event)
    assert response.status_code == 401 and "does not match" in reason_of(response)
    assert fakes.executions == {}


def test_tampered_body_with_original_signature_is_401(fakes):
    event = load_fixture("github_release_published.json")
    event["body"] = event["body"].replace("v1.4.0", "v9.9.9")
    assert fakes.call(event).status_code == 401
    assert fakes.executions == {}


def test_sha1_signature_alone_is_not_accepted(fakes):
    event = load_fixture("github_release_published.json")
    del event["headers"]["x-hub-signature-256"]
    assert "x-hub-signature" in event["headers"]
    assert fakes.call(event).status_code == 401


def test_signature_is_checked_before_json_is_parsed(fakes):
    unsigned_garbage = function_url_event(raw=b"{not json", secret=None)
    assert fakes.call(unsigned_garbage).status_code == 401
    signed_garbage = function_url_event(raw=b"{not json")
    response = fakes.call(signed_garbage)
    assert response.status_code == 400 and "not valid JSON" in reason_of(response)


def test_signature_matches_githubs_documented_vector():
    assert signature_matches("It's a Secret to Everybody", b"Hello, World!",
                             "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    assert not signature_matches("It's a Secret to Everybody", b"Hello, World!", "sha256=" + "0" * 64)
    assert not signature_matches("s", b"x", "sha256=\u00e9\ud800")  # non-ASCII never raises


def test_fixtures_are_signed_with_the_documented_test_secret():
    from gh_helpers import EVENTS

    names = sorted(p.name for p in EVENTS.glob("github_*.json"))
    assert len(names) >= 10
    for name in names:
        event = load_fixture(name)
        import base64

        raw = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
        assert event["headers"]["x-hub-signature-256"] == sign(raw), name


# ---------------------------------------------------------------- size, JSON, event types

def test_body_over_the_limit_is_413_before_the_secret_is_read():
    fakes = Fakes(max_body_bytes=2048)
    payload = release_payload(body="x" * 4096)
    response = fakes.call(function_url_event(payload))
    assert response.status_code == 413 and "2048" in reason_of(response)
    assert fakes.secret_reads == 0 and fakes.executions == {}
    big_b64 = function_url_event(payload, as_base64=True)
    assert fakes.call(big_b64).status_code == 413


def test_malformed_json_is_400(fakes):
    response = fakes.call(function_url_event(raw=b'{"action": "published", '))
    assert response.status_code == 400
    assert fakes.executions == {}


def test_invalid_base64_is_400(fakes):
    event = load_fixture("github_release_published_base64.json")
    event["body"] = "!!!not base64!!!"
    assert fakes.call(event).status_code == 400


def test_ping_is_200(fakes):
    response = fakes.call(load_fixture("github_ping.json"))
    assert response.status_code == 200
    assert json.loads(response.to_lambda()["body"])["ok"] is True
    assert fakes.executions == {}


def test_other_event_types_are_204(fakes):
    response = fakes.call(load_fixture("github_push.json"))
    assert response.status_code == 204 and "'push'" in reason_of(response)
    assert fakes.executions == {}


def test_non_post_is_405(fakes):
    event = load_fixture("github_ping.json")
    event["requestContext"]["http"]["method"] = "GET"
    assert fakes.call(event).status_code == 405


def test_release_payload_missing_fields_is_422_naming_them(fakes):
    response = fakes.call(function_url_event({"action": "published", "release": {"draft": False}}))
    assert response.status_code == 422
    assert "release.tag_name" in reason_of(response) and "repository" in reason_of(response)


# ---------------------------------------------------------------- user mistakes: 422 + notification

def test_bad_yaml_block_is_422_with_a_clear_message_and_a_notification(fakes):
    response = fakes.call(load_fixture("github_release_bad_yaml.json"))
    assert response.status_code == 422
    reason = reason_of(response)
    assert "hyperparameters.epochs" in reason and "hyperparameters.learning_rate" in reason
    assert fakes.executions == {}
    (note,) = fakes.notifications
    assert note.event_type is EventType.REJECTED
    assert "v1.4.2" in note.text and "hyperparameters.epochs" in note.reason
    assert note.links["release"].endswith("/v1.4.2")


def test_no_dataset_at_all_is_422():
    fakes = Fakes(datasets=[])
    response = fakes.call(load_fixture("github_release_published.json"))
    assert response.status_code == 422 and "no complete dataset version" in reason_of(response)
    assert fakes.executions == {} and len(fakes.notifications) == 1


def test_named_dataset_that_does_not_exist_is_422(fakes):
    response = fakes.call(function_url_event(release_payload(body="```yaml\ndataset: trucks/v1\n```")))
    assert response.status_code == 422 and "'trucks/v1'" in reason_of(response)


def test_tag_that_is_not_an_image_tag_is_422(fakes):
    response = fakes.call(function_url_event(release_payload(tag="release/2026 final")))
    assert response.status_code == 422 and "not a valid container image tag" in reason_of(response)


@pytest.mark.parametrize(("block", "expected"), [
    ("dataset: [a, b]", "dataset"),
    ("- just\n- a list", "must be a mapping"),
    ("dataset: pallets\n  bad: indent", "not valid YAML"),
    ("hyperparameters:\n  epochs: 0", "hyperparameters.epochs"),
    ("hyperparameters:\n  epochs: '100'", "hyperparameters.epochs"),  # strict: a quoted number is a typo
    ("hyperparameters:\n  optimizer: Adagrad", "hyperparameters.optimizer"),
    ("hyperparameters:\n  imgsz: 640.5", "hyperparameters.imgsz"),
    ("datset: pallets", "datset"),
    ("dataset: ../../etc", "dataset"),
])
def test_release_block_rejections_name_the_problem(block, expected):
    with pytest.raises(InvalidInput, match="release yaml block") as err:
        parse_release_block(f"notes\n```yaml\n{block}\n```\n")
    assert expected in str(err.value)


def test_release_block_absent_or_empty_means_defaults():
    assert parse_release_block(None).dataset is None
    assert parse_release_block("no block here").hyperparameters is None
    assert parse_release_block("```yaml\n```").dataset is None
    assert parse_release_block("```python\ndataset: x\n```").dataset is None


def test_release_block_int_for_float_and_bools():
    block = parse_release_block("```yaml\nhyperparameters:\n  lr0: 1\n  cos_lr: false\n```")
    assert block.hyperparameters.as_strings() == {"lr0": "1.0", "cos_lr": "false"}


# ---------------------------------------------------------------- collaborator failures

def test_concurrent_same_delivery_is_409():
    fakes = Fakes()

    def busy(delivery, action):
        raise DeliveryInProgress(delivery)

    deps = WebhookDeps(**{**fakes.deps.__dict__, "once": busy})
    assert handle_webhook(load_fixture("github_release_published.json"), deps).status_code == 409


def test_start_failure_raises_so_github_sees_an_error():
    fakes = Fakes()

    def broken(request, run_id):
        raise RuntimeError("throttled")

    deps = WebhookDeps(**{**fakes.deps.__dict__, "start": broken})
    with pytest.raises(RuntimeError, match="throttled"):
        handle_webhook(load_fixture("github_release_published.json"), deps)


def test_fixtures_are_complete_function_url_events():
    """`sam local invoke -e` and the real service send the full payload-2.0 shape; so do the fixtures."""
    from aws_lambda_powertools.utilities.parser.models import LambdaFunctionUrlModel
    from gh_helpers import EVENTS

    for path in sorted(EVENTS.glob("github_*.json")):
        parsed = LambdaFunctionUrlModel.model_validate(load_fixture(path.name))
        assert parsed.requestContext.http.method == "POST", path.name


def test_release_block_crlf_unclosed_and_pathological_bodies():
    assert parse_release_block("x\r\n```yaml\r\ndataset: a/b\r\n```\r\n```python\nx = 1\n```").dataset == "a/b"
    assert parse_release_block("```yaml\ndataset: a\n").dataset == "a"  # unclosed: to the end, like Markdown
    import time

    t0 = time.perf_counter()
    with pytest.raises(InvalidInput, match="over 16384 bytes"):
        parse_release_block("```yaml\n" * 15_000)  # GitHub caps release notes at 125,000 chars
    assert time.perf_counter() - t0 < 1.0
