"""Slack through the Web API (bot token): one thread per run, or the incoming webhook when there is no token.

With a bot token and a channel:
- `run.started` posts the run's parent message; its `ts` and channel are stored on the run record
  (`slack_ts`, `slack_channel`, conditional: a duplicate delivery deletes its own parent and stops);
- a final verdict (promoted, kept, failed, budget blocked, rejected) edits the parent (`chat.update`) and
  posts one line in the thread, so whoever follows the thread is told;
- any other message of the run is a reply in the thread (`chat.postMessage` with `thread_ts`);
- messages without a run, manual champion changes and runs with no parent (threads switched on mid-run,
  or a run that never started) are top-level posts, as with the webhook.
Without a token (the secret still holds its placeholder) or without a channel, the webhook path of
yoloops_core.slack delivers exactly as before. Rendering (and escaping) is yoloops_core.slack's in both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from yoloops_core.config import ConfigError, Settings
from yoloops_core.models import EventType
from yoloops_core.slack import SlackDeliveryError, deliver, payload_for, webhook_url_from_secret

logger = Logger(child=True)

FINAL_EVENTS = {EventType.PROMOTED, EventType.KEPT, EventType.FAILED, EventType.BUDGET_BLOCKED, EventType.REJECTED,
                EventType.NOT_APPROVED}
# Deliberate changes made later by a person, and an upload that started nothing because an earlier run had
# the same content: the channel should see them, not that earlier run's finished thread.
TOP_LEVEL_EVENTS = {EventType.MANUAL_PROMOTE, EventType.ROLLBACK, "dataset.unchanged"}
BOT_TOKEN_PREFIXES = ("xoxb-", "xoxe.xoxb-")


class ThreadStore(Protocol):
    def get_run(self, run_id: str) -> dict[str, Any] | None: ...
    def claim_slack_thread(self, run_id: str, channel: str, ts: str) -> bool: ...


class SlackApi(Protocol):
    """The subset of slack_sdk.WebClient used here (its camel-case names; tests pass a fake)."""

    def chat_postMessage(self, **kwargs: Any) -> Any: ...
    def chat_update(self, **kwargs: Any) -> Any: ...
    def chat_delete(self, **kwargs: Any) -> Any: ...


@dataclass
class Delivery:
    action: str  # parent | reply | verdict | top-level | duplicate
    ts: str | None = None


def bot_token_from_secret(secret: str) -> str | None:
    """The bot token in the secret (the token itself or JSON {"token"|"bot_token": ...}); None for the
    deploy-time placeholder, which means: no token, use the webhook."""
    value = (secret or "").strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            return None
        value = str(data.get("bot_token") or data.get("token") or "").strip() if isinstance(data, dict) else ""
    return value if value.startswith(BOT_TOKEN_PREFIXES) else None


def _call(api: SlackApi, method: str, **kwargs: Any) -> dict[str, Any]:
    from slack_sdk.errors import SlackApiError

    try:
        resp = getattr(api, method)(**kwargs)
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        # Raise: Lambda retries the async invocation, then the DLQ keeps the message (`yoloops dlq`).
        raise SlackDeliveryError(f"Slack rejected {method}: {error or exc}") from exc
    return dict(resp.data) if hasattr(resp, "data") else dict(resp)


def deliver_threaded(sns_message: str, api: SlackApi, channel: str, store: ThreadStore) -> Delivery:
    """One SNS message into the run's thread (see the module docstring)."""
    payload = payload_for(sns_message)  # escaped Block Kit + fallback text
    try:
        message = json.loads(sns_message)
    except (TypeError, ValueError):
        message = None
    message = message if isinstance(message, dict) else {}
    run_id = message.get("run_id") if isinstance(message.get("run_id"), str) else None
    etype = str(message.get("event_type") or "")
    record = store.get_run(run_id) if run_id and etype not in TOP_LEVEL_EVENTS else None

    def top_level() -> Delivery:
        resp = _call(api, "chat_postMessage", channel=channel, **payload)
        return Delivery("top-level", resp.get("ts"))

    if record is None:
        return top_level()
    ts, thread_channel = record.get("slack_ts"), record.get("slack_channel") or channel
    if etype == EventType.STARTED:
        if ts:
            logger.info("run already has its Slack thread", extra={"run_id": run_id, "slack_ts": ts})
            return Delivery("duplicate", ts)
        resp = _call(api, "chat_postMessage", channel=channel, **payload)
        if not store.claim_slack_thread(run_id, resp["channel"], resp["ts"]):
            # A concurrent duplicate delivery stored its parent first: one thread per run.
            _call(api, "chat_delete", channel=resp["channel"], ts=resp["ts"])
            return Delivery("duplicate", resp["ts"])
        return Delivery("parent", resp["ts"])
    if not ts:
        return top_level()
    if etype in FINAL_EVENTS:
        _call(api, "chat_update", channel=thread_channel, ts=ts, **payload)
        _call(api, "chat_postMessage", channel=thread_channel, thread_ts=ts, text=payload["text"])
        return Delivery("verdict", ts)
    resp = _call(api, "chat_postMessage", channel=thread_channel, thread_ts=ts, **payload)
    return Delivery("reply", resp.get("ts"))


def web_client(token: str, base_url: str) -> Any:
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    # 429 (honouring Retry-After), 5xx and dropped connections are retried a few times, then raise.
    handlers = [ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=3),
                ServerErrorRetryHandler(max_retry_count=2)]
    return WebClient(token=token, base_url=base_url if base_url.endswith("/") else base_url + "/", timeout=10,
                     retry_handlers=handlers)


def slack_delivery(settings: Settings, read_secret: Callable[[str], str],
                   store_factory: Callable[[], ThreadStore] | None = None,
                   api_factory: Callable[[str, str], SlackApi] = web_client) -> Callable[[str], Any]:
    """The notifier's delivery function: threads when a bot token and a channel are configured, else the
    incoming webhook (today's messages, unchanged)."""
    token = None
    if settings.slack_channel and settings.slack_bot_token_secret_arn:  # no channel: the token is not read
        token = bot_token_from_secret(read_secret(settings.slack_bot_token_secret_arn))
        if token is None:
            logger.warning("SLACK_CHANNEL is set but the bot-token secret holds no xoxb- token: using the webhook")
    if token:
        api = api_factory(token, settings.slack_api_url)
        if store_factory is None:
            from yoloops_core.store import RunStore

            store: ThreadStore = RunStore(settings.runs_table)
        else:
            store = store_factory()
        return lambda sns_message: deliver_threaded(sns_message, api, settings.slack_channel, store)
    if not settings.slack_webhook_secret_arn:
        raise ConfigError("no Slack destination: SLACK_WEBHOOK_SECRET_ARN is not set and there is no bot token")
    url = webhook_url_from_secret(read_secret(settings.slack_webhook_secret_arn))
    return lambda sns_message: deliver(sns_message, url)
