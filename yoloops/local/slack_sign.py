"""What Slack sends when someone clicks a button: a signed `block_actions` interaction (local stack, tests).

Slack signs `v0:{timestamp}:{body}` with the app's signing secret (HMAC-SHA256) and sends the hex digest as
`X-Slack-Signature: v0=...` next to `X-Slack-Request-Timestamp`; the body is form-encoded `payload=<JSON>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode


def block_actions(run_id: str, stage: str, approve: bool, user: str = "alice", user_id: str = "U0LOCAL1") -> str:
    """The form body of a click on an approval request's Approve / Reject button."""
    value = json.dumps({"run_id": run_id, "stage": stage})
    payload = {"type": "block_actions", "user": {"id": user_id, "username": user, "name": user},
               "actions": [{"action_id": "yoloops_approve" if approve else "yoloops_reject", "value": value,
                            "block_id": "yoloops_approval", "type": "button"}],
               "response_url": "https://hooks.slack.com/actions/T0/1/local"}
    return urlencode({"payload": json.dumps(payload)})


def sign(body: str | bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack adds to the request."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded"}
