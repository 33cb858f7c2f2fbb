"""Slack button clicks: only a request signed with the signing secret, timestamped within 5 minutes, decides."""

from __future__ import annotations

import json
import time

import pytest
from yoloops_core.approval import ApprovalNotPending, Decision
from yoloops_core.slack_interactions import handle_interaction

from yoloops.local.slack_sign import block_actions, sign

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class Decider:
    def __init__(self, refuse: str | None = None):
        self.calls: list[tuple] = []
        self.refuse = refuse

    def __call__(self, run_id, approve, by, stage):
        self.calls.append((run_id, approve, by, stage))
        if self.refuse:
            raise ApprovalNotPending(self.refuse)
        return Decision(run_id=run_id, stage=stage, decision="approved" if approve else "rejected", decided_by=by)


def _event(body: str, headers: dict[str, str]) -> dict:
    return {"headers": {k.lower(): v for k, v in headers.items()}, "body": body, "isBase64Encoded": False}


def test_a_signed_click_decides_and_names_the_user():
    body = block_actions("ds-a-v1-1", "train", approve=False, user="carol", user_id="U9")
    decide = Decider()
    resp = handle_interaction(_event(body, sign(body, SECRET)), signing_secret=SECRET, decide=decide)
    assert resp.status == 200
    assert decide.calls == [("ds-a-v1-1", False, "@carol (U9) in Slack", "train")]
    assert "Train rejected by @carol" in resp.body["text"]


@pytest.mark.parametrize("tamper", ["forged", "stale", "future", "body", "no-headers", "bad-ts"])
def test_forged_replayed_or_altered_requests_get_401_and_decide_nothing(tamper):
    body = block_actions("ds-a-v1-1", "train", approve=True)
    now = int(time.time())
    headers = {"forged": sign(body, "another-secret"), "stale": sign(body, SECRET, now - 301),
               "future": sign(body, SECRET, now + 301), "body": sign(body, SECRET),
               "no-headers": {}, "bad-ts": {**sign(body, SECRET), "X-Slack-Request-Timestamp": "soon"}}[tamper]
    sent = body.replace("ds-a-v1-1", "ds-b-v1-1") if tamper == "body" else body
    decide = Decider()
    resp = handle_interaction(_event(sent, headers), signing_secret=SECRET, decide=decide)
    assert resp.status == 401 and decide.calls == []


def test_an_empty_signing_secret_refuses_everything():
    body = block_actions("ds-a-v1-1", "train", approve=True)
    decide = Decider()
    resp = handle_interaction(_event(body, sign(body, " ")), signing_secret=" ", decide=decide)
    assert resp.status == 401 and decide.calls == []


def test_a_click_on_a_decided_approval_changes_nothing_and_says_why():
    body = block_actions("ds-a-v1-1", "train", approve=True)
    resp = handle_interaction(_event(body, sign(body, SECRET)), signing_secret=SECRET,
                              decide=Decider(refuse="run ds-a-v1-1 has no approval waiting (train rejected by @bob)"))
    assert resp.status == 200 and "rejected by @bob" in resp.body["text"]


def test_signed_but_unknown_payloads_are_400():
    body = "payload=" + json.dumps({"type": "view_submission"})
    resp = handle_interaction(_event(body, sign(body, SECRET)), signing_secret=SECRET, decide=Decider())
    assert resp.status == 400
