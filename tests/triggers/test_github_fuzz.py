"""Property-based fuzzing of the webhook: any input ends in a typed HTTP answer, never an exception."""

from __future__ import annotations

import base64
import contextlib
import json

from gh_helpers import Fakes, function_url_event, release_payload, sign
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yoloops_core.github import WebhookResponse

ALLOWED = {200, 202, 204, 400, 401, 405, 409, 413, 422}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)


def check(response: WebhookResponse, fakes: Fakes) -> None:
    assert isinstance(response, WebhookResponse)
    event(f"status {response.status_code}")  # --hypothesis-show-statistics shows the spread
    assert response.status_code in ALLOWED
    out = response.to_lambda()
    json.dumps(out)
    if response.status_code >= 400:
        assert out["headers"]["x-yoloops-reason"]  # every rejection names its problem
        assert json.loads(out["body"])["error"]
    if response.status_code not in (200, 202):
        assert fakes.executions == {}


@FUZZ
@given(st.one_of(json_values, st.dictionaries(
    st.sampled_from(["headers", "body", "isBase64Encoded", "requestContext", "version"]), json_values)))
def test_any_event_shape_is_answered(event):
    fakes = Fakes()
    check(fakes.call(event), fakes)


@FUZZ
@given(headers=st.dictionaries(st.text(max_size=30), st.text(max_size=80), max_size=6),
       body=st.text(max_size=300), b64=st.booleans())
def test_random_headers_and_bodies_are_unauthorised_or_rejected(headers, body, b64):
    fakes = Fakes()
    response = fakes.call({"headers": headers, "body": body, "isBase64Encoded": b64})
    check(response, fakes)
    assert response.status_code in (400, 401, 413)


@FUZZ
@given(raw=st.binary(max_size=400), event_type=st.sampled_from(["release", "ping", "push", "", "r\u00e9lease"]),
       b64=st.booleans())
def test_signed_random_bytes_never_crash(raw, event_type, b64):
    fakes = Fakes()
    event = function_url_event(raw=raw, event_type=event_type, as_base64=True)
    if not b64:
        with contextlib.suppress(UnicodeDecodeError):
            event["body"], event["isBase64Encoded"] = raw.decode(), False
    check(fakes.call(event), fakes)


release_like = st.fixed_dictionaries({
    "action": st.sampled_from(["published", "published", "created", "released", "edited", "prereleased"])
    | st.text(max_size=10),
    "release": st.fixed_dictionaries({
        "tag_name": st.sampled_from(["v1.0.0", "v2", "1.0/rc"]) | st.text(max_size=20),
        "html_url": st.just("https://github.com/acme/robot/releases/tag/v2") | st.text(max_size=20),
        "draft": st.booleans() | st.booleans() | json_scalars,
        "prerelease": st.booleans(),
        "body": st.none() | st.text(max_size=100) | st.builds(
            lambda y: f"notes\n```yaml\n{y}\n```\n",
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz:/ -\n{}[]0123456789'\"&*!", max_size=80)
            | st.sampled_from(["dataset: pallets", "dataset: pallets/2026-11-20\nhyperparameters: {epochs: 3}",
                               "hyperparameters:\n  epochs: -1", "a: &x [*x]", "dataset: !!python/object:os.system x"])),
    }, optional={"name": json_scalars}),
    "repository": st.fixed_dictionaries({"full_name": st.just("acme/robot") | st.text(max_size=20)}),
}, optional={"sender": json_values})


@FUZZ
@given(payload=release_like, allow=st.booleans())
def test_signed_release_shaped_payloads_end_in_a_typed_answer(payload, allow):
    fakes = Fakes(allow_prereleases=allow)
    response = fakes.call(function_url_event(payload))
    check(response, fakes)
    if response.status_code == 202:
        (request,) = fakes.executions.values()
        assert payload["action"] == "published" and payload["release"]["draft"] is False
        assert request["image_tag"] == payload["release"]["tag_name"]


@FUZZ
@given(body=st.text(max_size=2000))
def test_any_release_notes_end_in_a_typed_answer(body):
    fakes = Fakes()
    check(fakes.call(function_url_event(release_payload(body=body))), fakes)


def test_signature_check_uses_the_exact_bytes():
    payload = json.dumps(release_payload()).encode()
    event = function_url_event(raw=payload, as_base64=True)
    assert event["headers"]["x-hub-signature-256"] == sign(base64.b64decode(event["body"]))
    fakes = Fakes()
    assert fakes.call(event).status_code == 202
