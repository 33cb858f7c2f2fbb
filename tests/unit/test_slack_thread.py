"""One Slack thread per run (bot token) vs the incoming webhook (no token): the decision and the thread's shape."""

from __future__ import annotations

import json

import pytest
from yoloops_core.config import ConfigError, Settings
from yoloops_core.slack import SlackDeliveryError
from yoloops_core.slack_thread import bot_token_from_secret, deliver_threaded, slack_delivery

TOKEN_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:yoloops/slack-bot-token"
HOOK_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:yoloops/slack-webhook-url"
HOOK = "https://hooks.slack.com/services/T000/B000/XXXX"


class FakeApi:
    """slack_sdk.WebClient's chat_* methods as Slack answers them (channel ID back, ts per message)."""

    def __init__(self, fail: str | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail
        self.n = 0

    def _answer(self, method, kwargs):
        self.calls.append((method, kwargs))
        if self.fail == method:
            from slack_sdk.errors import SlackApiError
            from slack_sdk.web import SlackResponse

            resp = SlackResponse(client=None, http_verb="POST", api_url="x", req_args={},
                                 data={"ok": False, "error": "channel_not_found"}, headers={}, status_code=200)
            raise SlackApiError("The request to the Slack API failed.", resp)
        self.n += 1
        return {"ok": True, "channel": "C0RUNS", "ts": kwargs.get("ts") or f"1700000000.{self.n:06d}"}

    def chat_postMessage(self, **kwargs):
        return self._answer("chat_postMessage", kwargs)

    def chat_update(self, **kwargs):
        return self._answer("chat_update", kwargs)

    def chat_delete(self, **kwargs):
        return self._answer("chat_delete", kwargs)


class Runs:
    def __init__(self, *run_ids):
        self.records = {r: {"run_id": r} for r in run_ids}

    def get_run(self, run_id):
        return dict(self.records[run_id]) if run_id in self.records else None

    def claim_slack_thread(self, run_id, channel, ts):
        rec = self.records.get(run_id)
        if rec is None or rec.get("slack_ts"):
            return False
        rec.update(slack_ts=ts, slack_channel=channel)
        return True


def msg(event_type, run_id="ds-pallets-v1", **kw):
    return json.dumps({"event_type": event_type, "run_id": run_id, "dataset": "pallets", "version": "v1",
                       "text": f"{event_type} for pallets v1", **kw})


def settings(**kw):
    values = {"artifacts_bucket": "b", "runs_table": "runs", "notifications_topic_arn": "arn:aws:sns:x:1:t",
              "slack_webhook_secret_arn": HOOK_ARN, "slack_bot_token_secret_arn": TOKEN_ARN}
    values.update(kw)
    return Settings.model_validate(values)


# ---------------------------------------------------------------- the thread

def test_a_run_is_one_thread_parent_edited_with_the_verdict():
    api, runs = FakeApi(), Runs("ds-pallets-v1")
    parent = deliver_threaded(msg("run.started"), api, "#ml-runs", runs)
    assert parent.action == "parent"
    assert runs.records["ds-pallets-v1"] == {"run_id": "ds-pallets-v1", "slack_ts": parent.ts, "slack_channel": "C0RUNS"}
    reply = deliver_threaded(msg("training.interrupted"), api, "#ml-runs", runs)
    verdict = deliver_threaded(msg("model.promoted"), api, "#ml-runs", runs)
    assert (reply.action, verdict.action) == ("reply", "verdict")
    methods = [(m, k.get("channel"), k.get("thread_ts"), k.get("ts")) for m, k in api.calls]
    assert methods == [
        ("chat_postMessage", "#ml-runs", None, None),          # parent, in the configured channel
        ("chat_postMessage", "C0RUNS", parent.ts, None),       # interruption, in the thread (channel ID)
        ("chat_update", "C0RUNS", None, parent.ts),            # parent now shows the verdict
        ("chat_postMessage", "C0RUNS", parent.ts, None),       # and the thread is told
    ]
    update = api.calls[2][1]
    assert update["blocks"][0]["text"]["text"].endswith("New champion promoted")
    assert api.calls[3][1]["text"] == "model.promoted for pallets v1" and "blocks" not in api.calls[3][1]


def test_a_duplicate_run_started_never_makes_a_second_thread():
    api, runs = FakeApi(), Runs("r1")
    first = deliver_threaded(msg("run.started", "r1"), api, "#c", runs)
    again = deliver_threaded(msg("run.started", "r1"), api, "#c", runs)
    assert again.action == "duplicate" and again.ts == first.ts and len(api.calls) == 1


def test_a_concurrent_duplicate_deletes_its_own_parent():
    api, runs = FakeApi(), Runs("r1")

    class Racing(Runs):
        def get_run(self, run_id):  # both deliveries read the record before either stored its ts
            return {"run_id": run_id}

    racing = Racing("r1")
    racing.records = runs.records
    deliver_threaded(msg("run.started", "r1"), api, "#c", racing)
    lost = deliver_threaded(msg("run.started", "r1"), api, "#c", racing)
    assert lost.action == "duplicate"
    assert [m for m, _ in api.calls] == ["chat_postMessage", "chat_postMessage", "chat_delete"]
    assert api.calls[2][1] == {"channel": "C0RUNS", "ts": lost.ts} and lost.ts != runs.records["r1"]["slack_ts"]


@pytest.mark.parametrize("message", [
    msg("dataset.rejected", "ds-never-started"),              # no run record (rejected before the run)
    msg("champion.manual_promote"),                            # a person's later action: the channel sees it
    msg("dataset.unchanged"),                                  # same content as this (finished) run: nothing new
    json.dumps({"AlarmName": "dlq", "NewStateValue": "ALARM"}),  # not a yoloops run message
    "plain text from AWS Budgets",
])
def test_messages_without_a_thread_are_top_level(message):
    api, runs = FakeApi(), Runs("ds-pallets-v1")
    runs.records["ds-pallets-v1"]["slack_ts"] = "1.1"
    assert deliver_threaded(message, api, "#c", runs).action == "top-level"
    [(method, kwargs)] = api.calls
    assert method == "chat_postMessage" and kwargs["channel"] == "#c" and "thread_ts" not in kwargs


def test_a_verdict_for_a_run_with_no_parent_is_posted_top_level():
    api, runs = FakeApi(), Runs("r1")  # threads were switched on after this run started
    assert deliver_threaded(msg("training.failed", "r1"), api, "#c", runs).action == "top-level"


def test_thread_text_is_escaped():
    api, runs = FakeApi(), Runs("r1")
    deliver_threaded(msg("run.started", "r1", dataset="<!channel>", text="started <!channel>"), api, "#c", runs)
    assert "<!channel>" not in json.dumps(api.calls)


def test_a_slack_api_error_raises_for_the_retry_and_the_dlq():
    api, runs = FakeApi(fail="chat_update"), Runs("r1")
    deliver_threaded(msg("run.started", "r1"), api, "#c", runs)
    with pytest.raises(SlackDeliveryError, match="chat_update: channel_not_found"):
        deliver_threaded(msg("champion.kept", "r1"), api, "#c", runs)


# ---------------------------------------------------------------- token present / absent

@pytest.mark.parametrize(("secret", "token"), [
    ("xoxb-1-2-abc", "xoxb-1-2-abc"), (" xoxb-1-2-abc\n", "xoxb-1-2-abc"),
    (json.dumps({"bot_token": "xoxb-9"}), "xoxb-9"), (json.dumps({"token": "xoxb-8"}), "xoxb-8"),
    ("Q2hhbmdlTWVQbGFjZWhvbGRlcjEyMzQ1", None),  # the template's generated placeholder
    ("", None), ("{not json", None), ("xoxp-user-token", None),
])
def test_bot_token_forms(secret, token):
    assert bot_token_from_secret(secret) == token


def _secrets(token_value):
    return {TOKEN_ARN: token_value, HOOK_ARN: HOOK}.__getitem__


def test_token_present_delivers_into_threads_through_the_web_api(monkeypatch):
    made, api, runs = [], FakeApi(), Runs("r1")

    def factory(token, base_url):
        made.append((token, base_url))
        return api

    send = slack_delivery(settings(slack_channel="ml-runs", slack_api_url="http://127.0.0.1:9/slack-api/"),
                          _secrets("xoxb-real"), store_factory=lambda: runs, api_factory=factory)
    assert send(msg("run.started", "r1")).action == "parent"
    assert made == [("xoxb-real", "http://127.0.0.1:9/slack-api/")]
    assert api.calls[0][1]["channel"] == "ml-runs"


def test_token_absent_keeps_the_incoming_webhook(monkeypatch):
    posted = []
    monkeypatch.setattr("yoloops_core.slack.urllib_post",
                        lambda url, body, headers, timeout: posted.append((url, json.loads(body))) or (200, {}, "ok"))

    def no_api(token, base_url):
        raise AssertionError("no Web API without a token")

    send = slack_delivery(settings(slack_channel="ml-runs"), _secrets("GeneratedPlaceholder123"),
                          store_factory=lambda: Runs(), api_factory=no_api)
    assert send(msg("run.started", "r1")) == 1
    [(url, payload)] = posted
    assert url == HOOK and payload["blocks"][0]["type"] == "header"  # today's message, unchanged


def test_token_without_channel_uses_the_webhook_and_no_destination_is_a_config_error(monkeypatch):
    monkeypatch.setattr("yoloops_core.slack.urllib_post", lambda *a: (200, {}, "ok"))
    read = []
    secrets = _secrets("xoxb-real")
    send = slack_delivery(settings(), lambda arn: read.append(arn) or secrets(arn), api_factory=None)
    assert send(msg("run.started")) == 1 and read == [HOOK_ARN]  # no channel: the token is not even read
    with pytest.raises(ConfigError, match="no Slack destination"):
        slack_delivery(settings(slack_webhook_secret_arn=None, slack_bot_token_secret_arn=None), _secrets(""))
