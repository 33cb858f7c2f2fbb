"""Slack interactivity (the Approve / Reject buttons of an approval request) behind a function URL.

Slack POSTs `application/x-www-form-urlencoded` `payload=<JSON>` signed with the app's signing secret:
`X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{X-Slack-Request-Timestamp}:{raw body}")`. The signature is
checked on the exact bytes received, and the timestamp must be within 5 minutes (slack_sdk's
SignatureVerifier), so a forged request or a captured one replayed later gets 401 and changes nothing.
A replay within the 5 minutes finds the approval already decided (one decision per approval).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools import Logger

from yoloops_core.approval import ApprovalNotPending, Decision
from yoloops_core.logs import correlate

logger = Logger(child=True)

APPROVE_ACTION, REJECT_ACTION = "yoloops_approve", "yoloops_reject"
MAX_BODY_BYTES = 64 * 1024

# (run id, approve, decided by, stage) -> Decision; raises ApprovalNotPending
Decide = Callable[[str, bool, str, str | None], Decision]


@dataclass
class HttpResponse:
    status: int
    body: dict[str, Any]

    def to_lambda(self) -> dict[str, Any]:
        return {"statusCode": self.status, "headers": {"Content-Type": "application/json"},
                "body": json.dumps(self.body)}


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode()


def verified(event: dict[str, Any], signing_secret: str, clock: Any = None) -> bytes | None:
    """The raw body when Slack's v0 signature and a fresh timestamp check out; None otherwise."""
    from slack_sdk.signature import Clock, SignatureVerifier

    if not signing_secret or not signing_secret.strip():
        return None  # an empty key would make the HMAC forgeable
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    raw = _raw_body(event)
    try:
        ok = SignatureVerifier(signing_secret, clock=clock or Clock()).is_valid(
            raw, headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature"))
    except (TypeError, ValueError):  # a timestamp that is not a number
        return None
    return raw if ok else None


def _who(payload: dict[str, Any]) -> str:
    user = payload.get("user") if isinstance(payload.get("user"), dict) else {}
    name = user.get("username") or user.get("name") or "unknown user"
    return f"@{name} ({user.get('id', '?')}) in Slack"


def handle_interaction(event: dict[str, Any], *, signing_secret: str, decide: Decide,
                       clock: Any = None) -> HttpResponse:
    if len(_raw_body(event)) > MAX_BODY_BYTES:
        return HttpResponse(413, {"error": "body too large"})
    raw = verified(event, signing_secret, clock)
    if raw is None:
        logger.warning("Slack interaction refused: bad signature or stale timestamp")
        return HttpResponse(401, {"error": "invalid signature or timestamp"})
    try:
        payload = json.loads(parse_qs(raw.decode()).get("payload", [""])[0])
    except ValueError:
        return HttpResponse(400, {"error": "no JSON payload field"})
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return HttpResponse(400, {"error": f"unsupported interaction type {payload.get('type')!r}"
                                  if isinstance(payload, dict) else "payload is not an object"})
    actions = [a for a in payload.get("actions") or [] if isinstance(a, dict)
               and a.get("action_id") in (APPROVE_ACTION, REJECT_ACTION)]
    if not actions:
        return HttpResponse(400, {"error": "no yoloops approval action in the payload"})
    action = actions[0]
    try:
        value = json.loads(action.get("value") or "")
        run_id, stage = str(value["run_id"]), value.get("stage")
    except (ValueError, KeyError, TypeError):
        return HttpResponse(400, {"error": "the button's value names no run"})
    correlate(logger, run_id)
    approve = action["action_id"] == APPROVE_ACTION
    by = _who(payload)
    try:
        decision = decide(run_id, approve, by, stage)
    except ApprovalNotPending as exc:
        logger.info("approval click changed nothing", extra={"run_id": run_id, "why": str(exc)})
        return HttpResponse(200, {"response_type": "ephemeral", "replace_original": False, "text": str(exc)})
    text = f"{decision.stage.capitalize()} {decision.decision} by {by}."
    return HttpResponse(200, {"response_type": "in_channel", "replace_original": False, "text": text})
