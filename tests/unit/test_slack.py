"""Slack rendering (Block Kit) and delivery (retries, Retry-After, give up by raising)."""

from __future__ import annotations

import json

import pytest
from yoloops_core.slack import (
    MAX_ATTEMPTS,
    SlackDeliveryError,
    deliver,
    payload_for,
    render,
    webhook_url_from_secret,
)

URL = "https://hooks.slack.com/services/T000/B000/XXXX"


class Poster:
    def __init__(self, responses):
        self.responses = list(responses)
        self.calls = []

    def __call__(self, url, body, headers, timeout):
        self.calls.append((url, json.loads(body), headers, timeout))
        r = self.responses.pop(0)
        if isinstance(r, Exception):
            raise r
        return r


def _message(event, name):
    return event(name)["Records"][0]["Sns"]["Message"]


def test_promoted_block_kit(event):
    payload = payload_for(_message(event, "sns_promoted.json"))
    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header" and "New champion promoted" in blocks[0]["text"]["text"]
    assert payload["text"].startswith("New champion for pallets 2026-11-28")  # fallback for notifications
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1]
              for b in blocks if "fields" in b for f in b["fields"]}
    assert fields["Dataset"] == "pallets 2026-11-28"
    assert fields["mAP50-95"] == "0.6130 (+0.0320)"
    assert fields["Attempts"] == "2, 1 interruptions"
    assert fields["Duration"] == "49m 10s" and fields["Cost"] == "$0.82"
    context = next(b for b in blocks if b["type"] == "context")["elements"][0]["text"]
    assert "|Execution>" in context and "|Training job>" in context and "|Logs>" in context


def test_failed_block_kit_shows_reason(event):
    payload = payload_for(_message(event, "sns_training_failed.json"))
    assert payload["blocks"][0]["text"]["text"].endswith("Training failed")
    assert "AlgorithmError" in payload["text"]


def test_non_json_message_is_posted_as_plain_text(event):
    payload = payload_for(_message(event, "sns_plain_text.json"))
    assert payload == {"text": "AWS Notification - budget alarm: yoloops monthly training budget at 85%"}
    assert payload_for('{"not": "ours"}') == {"text": '{"not": "ours"}'}


def test_render_minimal_message():
    payload = render({"event_type": "run.started", "text": "started"})
    assert payload["text"] == "started" and payload["blocks"][0]["type"] == "header"


def test_retries_on_429_and_5xx_honouring_retry_after(event):
    poster = Poster([(429, {"Retry-After": "3"}, "rate_limited"), (503, {}, "busy"), (200, {}, "ok")])
    sleeps = []
    attempts = deliver(_message(event, "sns_promoted.json"), URL, poster=poster, sleep=sleeps.append)
    assert attempts == 3 and len(poster.calls) == 3
    assert sleeps == [3.0, 2.0]  # Retry-After, then exponential backoff for attempt 2
    assert poster.calls[0][0] == URL and poster.calls[0][2]["Content-Type"] == "application/json"
    assert poster.calls[0][3] > 0  # a timeout is always set


def test_network_errors_are_retried_then_raise(event):
    poster = Poster([TimeoutError("timed out")] * MAX_ATTEMPTS)
    sleeps = []
    with pytest.raises(SlackDeliveryError, match=f"after {MAX_ATTEMPTS} attempts"):
        deliver(_message(event, "sns_promoted.json"), URL, poster=poster, sleep=sleeps.append)
    assert len(poster.calls) == MAX_ATTEMPTS and len(sleeps) == MAX_ATTEMPTS - 1


def test_5xx_every_time_raises_for_lambda_retry_and_dlq(event):
    poster = Poster([(500, {}, "oops")] * MAX_ATTEMPTS)
    with pytest.raises(SlackDeliveryError, match="HTTP 500"):
        deliver(_message(event, "sns_promoted.json"), URL, poster=poster, sleep=lambda s: None)


def test_4xx_is_not_retried(event):
    poster = Poster([(404, {}, "no_service")])
    with pytest.raises(SlackDeliveryError, match="no_service"):
        deliver(_message(event, "sns_promoted.json"), URL, poster=poster, sleep=lambda s: None)
    assert len(poster.calls) == 1


@pytest.mark.parametrize(("secret", "url"), [
    (URL, URL), (f" {URL}\n", URL), (json.dumps({"url": URL}), URL), (json.dumps({"webhook_url": URL}), URL),
])
def test_webhook_secret_forms(secret, url):
    assert webhook_url_from_secret(secret) == url


def test_webhook_secret_without_url_is_rejected():
    with pytest.raises(ValueError, match="http"):
        webhook_url_from_secret("changeme")


def test_cloudwatch_alarm_on_the_topic_is_readable():
    alarm = json.dumps({"AlarmName": "yoloops-dev-executions-failed", "NewStateValue": "ALARM",
                        "NewStateReason": "Threshold Crossed: 1 datapoint [1.0] >= 1.0"})
    text = payload_for(alarm)["text"]
    assert "yoloops-dev-executions-failed" in text and "ALARM" in text and "Threshold Crossed" in text
    dlq = json.dumps({"AlarmName": "yoloops-dev-NotificationsDlqAlarm", "NewStateValue": "ALARM",
                      "NewStateReason": "1 datapoint [1.0] >= 1.0",
                      "AlarmDescription": "Slack notifications could not be delivered (see `yoloops dlq list`)"})
    assert payload_for(dlq)["text"].endswith("\nSlack notifications could not be delivered (see `yoloops dlq list`)")


def test_final_message_shows_the_run_cost_with_its_spot_saving():
    msg = json.dumps({"event_type": "model.promoted", "run_id": "ds-a-v1", "text": "New champion",
                      "cost_usd": 0.82, "spot_savings_pct": 64.2})
    assert "$0.82 (spot saved 64%)" in json.dumps(payload_for(msg))


def test_sub_cent_costs_keep_their_digits():
    from yoloops_core.pricing import format_usd

    assert format_usd(0.0008) == "$0.0008" and format_usd(1.5) == "$1.50" and format_usd(0) == "$0.00"


# ------------------------------------------------------------------ mrkdwn escaping (user-supplied strings)

def _all_text(payload) -> str:
    return json.dumps(payload)


def test_a_dataset_named_channel_does_not_ping_the_channel():
    hostile = "<!channel>"
    payload = render({
        "event_type": "dataset.rejected", "run_id": "ds-x-1", "dataset": hostile, "version": "<@U0123> & co",
        "text": f"Dataset {hostile} rejected: label text <!here> in labels/a.txt",
        "reason": "class name <https://evil.example|click me> is not in names",
        "report": {"problems": ["labels/<!everyone>.txt: bad class"], "note": "``` escape ```"},
        "links": {"execution": "https://console.aws.amazon.com/states?x=1&y=<!channel>|fake"},
    })
    text = _all_text(payload)
    for raw in ("<!channel>", "<!here>", "<!everyone>", "<@U0123>", "<https://evil.example|click me>"):
        assert raw not in text, raw
    assert "&lt;!channel&gt;" in text and "&lt;@U0123&gt; &amp; co" in text
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1]
              for b in payload["blocks"] if "fields" in b for f in b["fields"]}
    assert fields["Dataset"] == "&lt;!channel&gt; &lt;@U0123&gt; &amp; co"
    assert payload["text"].startswith("Dataset &lt;!channel&gt; rejected")  # the notification fallback too
    report = next(b for b in payload["blocks"] if "*Report*" in b.get("text", {}).get("text", ""))["text"]["text"]
    assert report.startswith("*Report*\n```") and report.endswith("```") and report.count("```") == 2
    # Our own link survives as one link whose URL cannot open a second one.
    context = next(b for b in payload["blocks"] if b["type"] == "context")["elements"][0]["text"]
    assert context.count("<") == 1 and context.endswith("|Execution>") and "%7Cfake" in context
    assert "x=1&amp;y=&lt;!channel&gt;" in context


def test_plain_text_and_alarm_messages_are_escaped_too():
    assert payload_for("budget <!channel> & more") == {"text": "budget &lt;!channel&gt; &amp; more"}
    alarm = payload_for(json.dumps({"AlarmName": "a<!here>", "NewStateValue": "ALARM", "NewStateReason": "x > 1"}))
    assert "<!here>" not in alarm["text"] and "x &gt; 1" in alarm["text"]


def test_escaping_keeps_ordinary_text_readable():
    payload = render({"event_type": "model.promoted", "dataset": "pallets", "version": "2026-11-28",
                      "text": "New champion for pallets 2026-11-28: mAP50-95 0.61"})
    assert payload["text"] == "New champion for pallets 2026-11-28: mAP50-95 0.61"
