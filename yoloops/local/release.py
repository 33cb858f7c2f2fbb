"""`yoloops local release TAG` and `local up --parameter-overrides`: what CI + GitHub and `sam deploy` do.

A release on the local stack: the image tag is registered in the stack's local ECR repository (what CI's
`docker push` does: PutImage with an image manifest), then a GitHub `release` webhook, signed with the
stack's webhook secret (X-Hub-Signature-256), is POSTed over HTTP to the webhook's function URL.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from yoloops_core.github import signature_for

LOCAL_REPOSITORY = "local/yoloops"  # the GitHub repository the local releases come from


class ReleaseError(RuntimeError):
    """The local release could not be made; the message says what to do."""


def parse_parameter_overrides(values: Iterable[str]) -> dict[str, str]:
    """`sam deploy --parameter-overrides` syntax: `Key=Value` pairs (space-separated within one value, or
    repeated) or `ParameterKey=Key,ParameterValue=Value`. Values are checked against the template later."""
    out: dict[str, str] = {}
    for value in values:
        for token in shlex.split(value):
            m = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", token) or re.fullmatch(r"([^=]+)=(.*)", token)
            if not m or not re.fullmatch(r"[A-Za-z0-9]+", m.group(1)):
                raise ReleaseError(f"parameter override {token!r} is not Key=Value "
                                   "(or ParameterKey=Key,ParameterValue=Value); keys are letters and digits")
            out[m.group(1)] = m.group(2)
    return out


def image_manifest(tag: str) -> str:
    """A Docker image manifest (schema 2) whose config digest stands for the image CI built for `tag`."""
    config = hashlib.sha256(f"yoloops-training:{tag}".encode()).hexdigest()
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1024,
                   "digest": f"sha256:{config}"},
        "layers": [],
    })


def register_image(ecr: Any, repository: str, tag: str) -> str:
    """PutImage `repository:tag` (idempotent for the same tag); returns the image digest."""
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
        if found:
            return found[0]["imageDigest"]
    except Exception as exc:  # ImageNotFoundException: push it; a missing repository is the stack's problem
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code == "RepositoryNotFoundException":
            raise ReleaseError(f"the local stack has no ECR repository {repository!r}") from exc
        if code != "ImageNotFoundException":
            raise
    manifest = image_manifest(tag)
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()  # what ECR computes from the manifest
    image = ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag, imageDigest=digest)["image"]
    return image["imageId"].get("imageDigest") or digest


def release_event(tag: str, *, dataset: str | None = None, repository: str = LOCAL_REPOSITORY) -> dict[str, Any]:
    """A GitHub `release` (action published) payload; the same tag is the same release (same release.id)."""
    release_id = int(hashlib.sha256(f"{repository}@{tag}".encode()).hexdigest()[:12], 16)
    body = f"Local release {tag}."
    if dataset:
        body += f"\n\n```yaml\ndataset: {dataset}\n```\n"
    owner, name = repository.split("/", 1)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "action": "published",
        "release": {"id": release_id, "tag_name": tag, "name": f"{name} {tag}", "draft": False,
                    "prerelease": False, "body": body, "created_at": now, "published_at": now,
                    "html_url": f"https://github.com/{repository}/releases/tag/{tag}"},
        "repository": {"full_name": repository, "name": name, "owner": {"login": owner}},
        "sender": {"login": "yoloops-local"},
    }


def deliver(url: str, secret: str, payload: dict[str, Any], timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """POST the payload as GitHub does (signed raw body); returns (status, JSON body or {})."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/yoloops-local",
               "X-GitHub-Event": "release", "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": signature_for(secret, body)}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, text = resp.status, resp.read().decode()
            reason = resp.headers.get("X-Yoloops-Reason")
    except urllib.error.HTTPError as exc:
        status, text, reason = exc.code, exc.read().decode(errors="replace"), exc.headers.get("X-Yoloops-Reason")
    except urllib.error.URLError as exc:
        raise ReleaseError(f"the webhook {url} is not answering ({exc.reason}): is `yoloops local up` running?") from exc
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        data = {"body": text}
    if reason and "reason" not in data:
        data["reason"] = reason
    return status, data


def local_release(stack: Any, tag: str, dataset: str | None = None,
                  repository: str = LOCAL_REPOSITORY) -> dict[str, Any]:
    """Register the image tag, then deliver the signed webhook; `stack` is a yoloops.client.Stack."""
    outputs = stack.info.outputs
    repo = outputs.get("TrainingImageRepositoryName")
    url = outputs.get("GithubWebhookUrl")
    secret_arn = outputs.get("GithubWebhookSecretArn")
    if not (repo and url and secret_arn):
        raise ReleaseError("the stack lacks TrainingImageRepositoryName / GithubWebhookUrl / GithubWebhookSecretArn")
    digest = register_image(stack.client("ecr"), repo, tag)
    secret = stack.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    status, body = deliver(url, secret, release_event(tag, dataset=dataset, repository=repository))
    return {"image": f"{repo}:{tag}", "digest": digest, "status": status, **body}
