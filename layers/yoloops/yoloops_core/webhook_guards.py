"""Replay and misconfiguration guards of the GitHub webhook (used by yoloops_core.github).

The delivery id (X-GitHub-Delivery) is not covered by the signature, so a captured signed body can be
replayed under a new id. What IS signed is the payload: the release id, the action and published_at.
- Dedupe key: release id + action + published_at. A replay of the same publication maps to the same key
  (accepted once); publishing the release again (new published_at) is a new key, so a run that died
  waiting for its image can still be retried by re-publishing.
- Age: a publication older than MAX_RELEASE_AGE_HOURS is refused, so a replay after the dedupe record
  expired (4 days) starts nothing either.
- Secret: an empty or blank secret would make the HMAC forgeable (anyone can sign with an empty key).
"""

from __future__ import annotations

from datetime import datetime

from yoloops_core.models import utcnow


def usable_secret(secret: str | bytes | None) -> bool:
    if secret is None:
        return False
    text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
    return bool(text.strip())


def release_key(release_id: int | None, action: str, published_at: str | None, delivery: str) -> str:
    """What `once` dedupes on: the signed publication, or the delivery id for a payload without a release id."""
    if release_id is None:
        return delivery
    return f"release-{release_id}-{action}-{published_at or 'unpublished'}"


def _parse(ts: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def release_age_problem(published_at: str | None, max_age_hours: float | None,
                        now: datetime | None = None) -> str | None:
    """Why a publication is refused as too old (or undated), or None when it may start a run."""
    if max_age_hours is None:
        return None
    if not published_at:
        return "release has no published_at, so its age cannot be checked; GitHub sends it on 'published'"
    published = _parse(published_at)
    if published is None:
        return f"release published_at {published_at!r} is not an ISO 8601 timestamp with a time zone"
    age_h = ((now or utcnow()) - published).total_seconds() / 3600
    if age_h > max_age_hours:
        return (f"release was published {age_h:.1f} h ago ({published_at}), more than MAX_RELEASE_AGE_HOURS="
                f"{max_age_hours:g}; a replayed or late delivery starts nothing: publish the release again "
                "to start a run")
    return None
