"""Slack delivery: notification JSON -> Block Kit -> POST to the incoming webhook, with bounded retries.

Failure after the retries raises: Lambda's async retries try again, then the DLQ keeps the message.
Every string that can come from a user (dataset names, versions, label text, report lines, reasons,
release names: anything in a notification) is escaped for Slack mrkdwn, so a dataset called
`<!channel>` is shown, never obeyed. (Threads through the Web API: yoloops_core.slack_thread.)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from yoloops_core.pricing import format_usd
from yoloops_core.verdict_report import verdict_text
from yoloops_core.weights import describe as describe_weights

logger = Logger(child=True)

MAX_ATTEMPTS = 4
BASE_BACKOFF_S = 1.0
MAX_BACKOFF_S = 20.0
TIMEOUT_S = 10.0

EMOJI = {
    "run.started": ":rocket:", "dataset.rejected": ":no_entry:", "dataset.unchanged": ":repeat:",
    "budget.blocked": ":money_with_wings:",
    "training.failed": ":x:", "training.interrupted": ":hourglass:", "model.promoted": ":trophy:",
    "champion.kept": ":shield:", "champion.manual_promote": ":crown:", "champion.rollback": ":rewind:",
    "approval.requested": ":raised_hand:", "approval.approved": ":white_check_mark:", "run.not_approved": ":no_entry_sign:",
    "sweep.leaderboard": ":bar_chart:",
}
TITLE = {
    "run.started": "Training started", "dataset.rejected": "Dataset rejected",
    "dataset.unchanged": "Upload unchanged (nothing started)",
    "budget.blocked": "Run blocked by budget", "training.failed": "Training failed",
    "training.interrupted": "Spot interruption", "model.promoted": "New champion promoted",
    "champion.kept": "Champion kept", "champion.manual_promote": "Champion set manually",
    "champion.rollback": "Champion rolled back",
    "approval.requested": "Approval needed", "approval.approved": "Approved", "run.not_approved": "Run not approved",
    "sweep.leaderboard": "Sweep leaderboard",
}


class SlackDeliveryError(RuntimeError):
    """Slack did not accept the message after the bounded retries."""


# (url, body, headers, timeout) -> (status, headers, body text)
Poster = Callable[[str, bytes, dict[str, str], float], tuple[int, dict[str, str], str]]


def urllib_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()) if exc.headers else {}, exc.read().decode("utf-8", "replace")


def webhook_url_from_secret(secret: str) -> str:
    """The secret holds the URL itself or JSON {"url": ...} / {"webhook_url": ...}."""
    value = secret.strip()
    if value.startswith("{"):
        data = json.loads(value)
        value = str(data.get("webhook_url") or data.get("url") or "")
    if not value.startswith(("https://", "http://")):
        raise ValueError("the Slack webhook secret does not hold an http(s) URL")
    return value


def escape(text: object) -> str:
    """Slack's three control characters as entities (https://api.slack.com/reference/surfaces/formatting):
    `<!channel>`, `<@U123>` and `<url|label>` only exist when written with raw `<` and `>`."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: object, label: str) -> str:
    # A URL cannot break out of its <...|...> once `<`, `>` are escaped and `|` is percent-encoded.
    return f"<{escape(url).replace('|', '%7C')}|{label}>"


def _fmt_duration(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s"


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{value}"}


def render(message: dict[str, Any]) -> dict[str, Any]:
    """Block Kit payload (header, fields, optional reason/report, context links) + fallback `text`."""
    etype = str(message.get("event_type") or "")
    title = f"{EMOJI.get(etype, ':information_source:')} {TITLE.get(etype, etype or 'yoloops')}"
    raw_text = str(message.get("text") or title)
    text = escape(raw_text)
    fields = []
    if message.get("dataset"):
        fields.append(_field("Dataset", escape(f"{message['dataset']} {message.get('version') or ''}".strip())))
    if message.get("run_id"):
        fields.append(_field("Run", f"`{escape(message['run_id'])}`"))
    metrics = message.get("metrics") or {}
    delta = message.get("delta") or {}
    for name in ("mAP50-95", "mAP50"):
        if isinstance(metrics.get(name), (int, float)):
            shown = f"{metrics[name]:.4f}"
            if isinstance(delta.get(name), (int, float)):
                shown += f" ({delta[name]:+.4f})"
            fields.append(_field(name, shown))
    if message.get("attempts") is not None:
        extra = f", {message['interruptions']} interruptions" if message.get("interruptions") else ""
        fields.append(_field("Attempts", f"{message['attempts']}{extra}"))
    if isinstance(message.get("duration_s"), (int, float)):
        fields.append(_field("Duration", _fmt_duration(message["duration_s"])))
    if isinstance(message.get("cost_usd"), (int, float)):
        saved = message.get("spot_savings_pct")
        fields.append(_field("Cost", format_usd(message["cost_usd"])
                             + (f" (spot saved {saved:.0f}%)" if isinstance(saved, (int, float)) and saved > 0 else "")))
    if message.get("base_weights"):
        fields.append(_field("Base weights", escape(describe_weights(str(message["base_weights"])))))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})
    if message.get("reason") and str(message.get("reason")) not in raw_text:
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": f"*Reason*\n{escape(message['reason'])}"[:3000]}})
    if isinstance(message.get("report"), dict):
        # Label text and file names are in here; no ``` inside may close the code block early.
        report = escape(json.dumps(message["report"], indent=1)).replace("```", "` ` `")[:2900]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Report*\n```{report}```"}})
    if isinstance(message.get("verdict"), dict):
        # The verdict with its evidence: the same table as `yoloops run show` and verdict.json.
        table = escape(verdict_text(message["verdict"])).replace("```", "` ` `")[:2900]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Verdict*\n```{table}```"}})
    approval = message.get("approval")
    if isinstance(approval, dict) and approval.get("run_id"):
        # Slack posts the click to the app's interactivity URL (yoloops_core.slack_interactions).
        value = json.dumps({"run_id": str(approval["run_id"]), "stage": str(approval.get("stage") or "")})[:2000]
        blocks.append({"type": "actions", "block_id": "yoloops_approval", "elements": [
            {"type": "button", "action_id": "yoloops_approve", "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "yoloops_reject", "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": "Reject"}},
        ]})
    link_names = {"execution": "Execution", "training_job": "Training job", "logs": "Logs"}
    links = [_link(url, link_names.get(k, escape(k))) for k, url in (message.get("links") or {}).items() if url]
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    return {"text": text, "blocks": blocks}


def payload_for(sns_message: str) -> dict[str, Any]:
    """A yoloops notification renders as Block Kit; anything else is posted as plain text."""
    try:
        message = json.loads(sns_message)
    except (TypeError, ValueError):
        message = None
    if isinstance(message, dict) and "event_type" in message:
        return render(message)
    if isinstance(message, dict) and "AlarmName" in message:
        # CloudWatch alarms (Notify errors, DLQ arrivals, price refresh) share the topic; the description says
        # what to do (e.g. `yoloops dlq list`).
        what = f"\n{escape(message['AlarmDescription'])}" if message.get("AlarmDescription") else ""
        return {"text": f":rotating_light: Alarm *{escape(message.get('AlarmName'))}* is "
                        f"{escape(message.get('NewStateValue'))}: {escape(message.get('NewStateReason', ''))}"
                        f"{what}"[:39000]}
    return {"text": escape(sns_message)[:39000]}


def _retry_after(headers: dict[str, str], attempt: int) -> float:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return min(float(value), MAX_BACKOFF_S)
            except ValueError:
                break
    return min(BASE_BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S)


def post(url: str, payload: dict[str, Any], poster: Poster | None = None,
         sleep: Callable[[float], None] | None = None, max_attempts: int = MAX_ATTEMPTS) -> int:
    """POST with retries on 429/5xx/network errors (honouring Retry-After); returns attempts used."""
    poster = poster or urllib_post  # looked up at call time so tests can swap the transport
    sleep = sleep or time.sleep
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    last = ""
    for attempt in range(1, max_attempts + 1):
        try:
            status, resp_headers, text = poster(url, body, headers, TIMEOUT_S)
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            status, resp_headers, text = 0, {}, f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return attempt
        last = f"HTTP {status}: {text[:200]}" if status else text[:200]
        if status and status != 429 and status < 500:
            # 4xx other than 429 (bad payload, revoked webhook): retrying cannot help.
            raise SlackDeliveryError(f"Slack rejected the message: {last}")
        logger.warning("slack post failed, will retry", extra={"attempt": attempt, "status": status})
        if attempt < max_attempts:
            sleep(_retry_after(resp_headers, attempt))
    raise SlackDeliveryError(f"Slack did not accept the message after {max_attempts} attempts: {last}")


def deliver(sns_message: str, webhook_url: str, poster: Poster | None = None,
            sleep: Callable[[float], None] | None = None) -> int:
    return post(webhook_url, payload_for(sns_message), poster=poster, sleep=sleep)


def get_webhook_url(secret_arn: str, max_age: int = 300) -> str:
    """Webhook URL from Secrets Manager, cached for `max_age` seconds (warm starts)."""
    from yoloops_core import aws

    return webhook_url_from_secret(aws.secret(secret_arn, max_age=max_age))
