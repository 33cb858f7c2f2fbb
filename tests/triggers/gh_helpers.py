"""Shared helpers for the GitHub webhook, check-image and training-events tests.

The github_* fixtures in events/ are Lambda Function URL (payload 2.0) events signed with
TEST_SECRET below; the tests store that secret in moto Secrets Manager. For `sam local invoke -e`,
put the same value in the secret named by GITHUB_WEBHOOK_SECRET_ARN.

Regenerate every fixture after changing a builder:  python tests/triggers/gh_helpers.py
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from yoloops_core.github import WebhookDeps, handle_webhook
from yoloops_core.models import DatasetRef, run_id_for_release
from yoloops_core.runs import StartResult
from yoloops_core.training_events import RecordResult, TrainingEventDeps, handle_training_event

EVENTS = Path(__file__).resolve().parents[2] / "events"

# Documented TEST secret: only for fixtures and tests, never a real webhook's.
TEST_SECRET = "yoloops-test-webhook-secret-do-not-use-in-production"
REPO = "acme-robotics/pallet-detector"
TAG = "v1.4.0"
RELEASE_ID = 187000001
# The run id the webhook gives the fixtures' release (repo, tag, release.id).
WEBHOOK_RUN_ID = run_id_for_release(REPO, TAG, RELEASE_ID)
# Run ids in the sagemaker_* fixtures' job names (training events parse any `<run id>-a<n>`).
RELEASE_RUN_ID = "gh-acme-robotics-pallet-detector-v1-4-0"
DATASET_RUN_ID = "ds-pallets-2026-11-20"


def sign(body: bytes, secret: str = TEST_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def release_payload(action: str = "published", *, tag: str = TAG, body: str = "", draft: bool = False,
                    prerelease: bool = False, repo: str = REPO, release_id: int = 187000001) -> dict[str, Any]:
    owner, name = repo.split("/")
    api = f"https://api.github.com/repos/{repo}"
    return {
        "action": action,
        "release": {
            "url": f"{api}/releases/{release_id}",
            "html_url": f"https://github.com/{repo}/releases/tag/{tag}",
            "id": release_id,
            "tag_name": tag,
            "target_commitish": "main",
            "name": f"{name} {tag}",
            "draft": draft,
            "prerelease": prerelease,
            "author": {"login": "mara-ops", "id": 5550001, "type": "User"},
            "created_at": "2026-11-28T09:14:02Z",
            "published_at": None if draft else "2026-11-28T09:15:40Z",
            "assets": [],
            "tarball_url": f"{api}/tarball/{tag}",
            "zipball_url": f"{api}/zipball/{tag}",
            "body": body,
        },
        "repository": {
            "id": 700000001,
            "name": name,
            "full_name": repo,
            "private": True,
            "owner": {"login": owner, "id": 5550000, "type": "Organization"},
            "html_url": f"https://github.com/{repo}",
            "default_branch": "main",
        },
        "organization": {"login": owner, "id": 5550000},
        "sender": {"login": "mara-ops", "id": 5550001, "type": "User"},
    }


def ping_payload() -> dict[str, Any]:
    return {
        "zen": "Design for failure.",
        "hook_id": 480000001,
        "hook": {"type": "Repository", "id": 480000001, "name": "web", "active": True,
                 "events": ["release"], "config": {"content_type": "json", "insecure_ssl": "0",
                                                  "url": "https://abc123.lambda-url.us-east-1.on.aws/"}},
        "repository": {"id": 700000001, "name": "pallet-detector", "full_name": REPO, "private": True},
        "sender": {"login": "mara-ops", "id": 5550001, "type": "User"},
    }


def function_url_event(payload: Any = None, *, event_type: str = "release",
                       delivery: str = "4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a01", raw: bytes | None = None,
                       secret: str | None = TEST_SECRET, as_base64: bool = False) -> dict[str, Any]:
    """A Function URL event as GitHub's POST would produce it (signature over the exact body)."""
    body = raw if raw is not None else json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "accept": "*/*",
        "content-type": "application/json",
        "host": "abc123.lambda-url.us-east-1.on.aws",
        "user-agent": "GitHub-Hookshot/5f1e2d3",
        "x-github-delivery": delivery,
        "x-github-event": event_type,
        "x-github-hook-id": "480000001",
        "x-github-hook-installation-target-id": "700000001",
        "x-github-hook-installation-target-type": "repository",
        "x-forwarded-proto": "https",
    }
    if secret is not None:
        headers["x-hub-signature"] = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        headers["x-hub-signature-256"] = sign(body, secret)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "140.82.115.10",
                     "userAgent": "GitHub-Hookshot/5f1e2d3"},
            "requestId": "0b1c2d3e-0000-4000-8000-000000000001",
            "routeKey": "$default",
            "stage": "$default",
            "time": "28/Nov/2026:09:15:41 +0000",
            "timeEpoch": 1795857341000,
        },
        "body": base64.b64encode(body).decode() if as_base64 else body.decode(),
        "isBase64Encoded": as_base64,
    }


YAML_BODY = """## What's new
Better pallet-corner regression.

```yaml
dataset: pallets/2026-11-20
hyperparameters:
  epochs: 120
  imgsz: 640
  lr0: 0.005
  cos_lr: true
```
"""

BAD_YAML_BODY = """Retrain with more epochs.

```yaml
dataset: pallets
hyperparameters:
  epochs: lots
  learning_rate: 0.1
```
"""


# ---------------------------------------------------------------- SageMaker events

def _ms(seconds: int) -> str:
    return str(1795856000000 + seconds * 1000)


def training_event(job: str, status: str, secondary: str, transitions: list[str], *,
                   event_id: str = "7f4c2a10-1111-4d2e-9a51-000000000001",
                   metrics: dict[str, float] | None = None) -> dict[str, Any]:
    """A "SageMaker Training Job State Change" event: the detail mirrors DescribeTrainingJob."""
    steps = [{"Status": s, "StartTime": _ms(60 * i), "StatusMessage": f"{s} (step {i})"}
             for i, s in enumerate(transitions)]
    for i in range(len(steps) - 1):
        steps[i]["EndTime"] = steps[i + 1]["StartTime"]
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"
    detail: dict[str, Any] = {
        "TrainingJobName": job,
        "TrainingJobArn": arn,
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "HyperParameters": {"epochs": "50", "imgsz": "640", "model": "yolo11n.yaml"},
        "AlgorithmSpecification": {"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/yoloops-train:v1.4.0",
                                   "TrainingInputMode": "File", "EnableSageMakerMetricsTimeSeries": False},
        "RoleArn": "arn:aws:iam::123456789012:role/yoloops-sagemaker",
        "OutputDataConfig": {"S3OutputPath": f"s3://yoloops-artifacts/runs/{job.rsplit('-a', 1)[0]}/output/"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": f"s3://yoloops-artifacts/checkpoints/{job.rsplit('-a', 1)[0]}/",
                             "LocalPath": "/opt/ml/checkpoints"},
        "CreationTime": _ms(0),
        "TrainingStartTime": _ms(60),
        "LastModifiedTime": _ms(60 * len(transitions)),
        "SecondaryStatusTransitions": steps,
        "Tags": {"yoloops:run-id": job.rsplit("-a", 1)[0]},
    }
    if status in ("Completed", "Failed", "Stopped"):
        detail["TrainingEndTime"] = _ms(60 * len(transitions))
    if metrics:
        detail["FinalMetricDataList"] = [{"MetricName": k, "Value": v, "Timestamp": _ms(60 * len(transitions))}
                                         for k, v in metrics.items()]
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-11-28T09:40:00Z",
        "region": "us-east-1",
        "resources": [arn],
        "detail": detail,
    }


def with_new_event_id(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    """A SageMaker re-send of the same transition: new envelope id, same detail."""
    out = copy.deepcopy(event)
    out["id"] = event_id
    return out


def _check_image_input(polls: int, started_at: str = "2026-11-28T09:15:45Z") -> dict[str, Any]:
    image_uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/yoloops-train:v1.4.0"
    return {
        "run": {
            "run_id": RELEASE_RUN_ID,
            "execution_arn": f"arn:aws:states:us-east-1:123456789012:execution:yoloops-training:{RELEASE_RUN_ID}",
            "dataset": {"name": "pallets", "version": "2026-11-20", "format": "dir"},
            "trigger": {"source": "github", "ref": f"https://github.com/{REPO}/releases/tag/{TAG}",
                        "detail": {"repo": REPO, "tag": TAG}},
            "image_tag": TAG,
            "image_uri": image_uri,
            "needs_image_check": True,
            "image_poll_seconds": 30,
            "hyperparameters": {},
            "started_at": started_at,
        },
        "image": {"ready": False, "polls": polls, "image_uri": image_uri},
    }


def fixtures() -> dict[str, Any]:
    ran = ["Starting", "Downloading", "Training"]
    return {
        "github_release_published.json": function_url_event(release_payload()),
        "github_release_published_base64.json": function_url_event(
            release_payload(), delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a0b", as_base64=True),
        "github_release_created.json": function_url_event(
            release_payload("created"), delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a02"),
        "github_release_released.json": function_url_event(
            release_payload("released"), delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a03"),
        "github_release_edited.json": function_url_event(
            release_payload("edited"), delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a04"),
        "github_release_prereleased.json": function_url_event(
            release_payload("prereleased", tag="v1.5.0-rc.1", prerelease=True),
            delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a05"),
        "github_release_published_prerelease.json": function_url_event(
            release_payload("published", tag="v1.5.0-rc.1", prerelease=True),
            delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a06"),
        "github_release_draft.json": function_url_event(
            release_payload("published", tag="v1.6.0", draft=True),
            delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a07"),
        "github_release_with_yaml_block.json": function_url_event(
            release_payload(tag="v1.4.1", body=YAML_BODY), delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a08"),
        "github_release_bad_yaml.json": function_url_event(
            release_payload(tag="v1.4.2", body=BAD_YAML_BODY), delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a09"),
        "github_ping.json": function_url_event(ping_payload(), event_type="ping",
                                               delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a00"),
        "github_push.json": function_url_event(
            {"ref": "refs/heads/main", "repository": {"full_name": REPO}}, event_type="push",
            delivery="4a7c1e90-8d2b-11ef-9b1a-2f6c3d1e0a0a"),
        "sagemaker_training_interrupted.json": training_event(
            f"{RELEASE_RUN_ID}-a1", "InProgress", "Interrupted", [*ran, "Interrupted"]),
        "sagemaker_training_max_wait.json": training_event(
            f"{RELEASE_RUN_ID}-a2", "Stopped", "MaxWaitTimeExceeded",
            [*ran, "Interrupted", "Starting", "MaxWaitTimeExceeded"], event_id="7f4c2a10-1111-4d2e-9a51-000000000002"),
        "sagemaker_training_completed.json": training_event(
            f"{DATASET_RUN_ID}-a1", "Completed", "Completed", [*ran, "Uploading", "Completed"],
            event_id="7f4c2a10-1111-4d2e-9a51-000000000003",
            metrics={"epoch": 50.0, "mAP50": 0.91, "mAP50-95": 0.68}),
        "sagemaker_training_foreign_job.json": training_event(
            "xgboost-churn-2026-11-28-09-00-00-123", "InProgress", "Interrupted", [*ran, "Interrupted"],
            event_id="7f4c2a10-1111-4d2e-9a51-000000000004"),
        "stepfn_check_image_first_poll.json": _check_image_input(0),
        "stepfn_check_image_last_poll.json": _check_image_input(19),
    }


# ---------------------------------------------------------------- fakes for domain tests

class Fakes:
    """Execution names are unique (like Step Functions); `once` remembers delivery ids."""

    def __init__(self, datasets=None, *, allow_prereleases=False, max_body_bytes=1_000_000):
        self.executions: dict[str, dict] = {}
        self.deliveries: dict[str, dict] = {}
        self.notifications = []
        self.secret_reads = 0
        self.datasets = datasets if datasets is not None else [
            DatasetRef(name="pallets", version="2026-11-20"),  # newest first
            DatasetRef(name="pallets", version="2026-11-01", format="zip"),
            DatasetRef(name="forklifts", version="v3"),
        ]
        self.deps = WebhookDeps(secret=self._secret, start=self._start, once=self._once,
                                find_dataset=self._find, notify=self.notifications.append,
                                allow_prereleases=allow_prereleases, max_body_bytes=max_body_bytes)

    def _secret(self):
        self.secret_reads += 1
        return TEST_SECRET

    def _start(self, request, run_id):
        if run_id in self.executions:
            return StartResult(run_id=run_id, started=False, execution_arn=None)
        self.executions[run_id] = request.model_dump(mode="json")
        return StartResult(run_id=run_id, started=True, execution_arn=f"arn:exec:{run_id}")

    def _once(self, delivery, action):
        if delivery not in self.deliveries:
            self.deliveries[delivery] = action()
        return self.deliveries[delivery]

    def _find(self, name, version):
        for ref in self.datasets:
            if (not name or ref.name == name) and (not version or ref.version == version):
                return ref
        return None

    def call(self, event):
        return handle_webhook(event, self.deps)


class FakeStore:
    def __init__(self, runs=(RELEASE_RUN_ID, DATASET_RUN_ID)):
        self.runs = {r: {"seen_events": set(), "interruptions": 0, "interruptions_by_attempt": {},
                         "dataset": "pallets"} for r in runs}

    def record(self, run_id, key, *, secondary_status, job_name, attempt, interrupted, at):
        run = self.runs.get(run_id)
        if run is None:
            return RecordResult(outcome="no_run")
        if key in run["seen_events"]:
            return RecordResult(outcome="duplicate")
        run["seen_events"].add(key)
        run["last_secondary_status"] = secondary_status
        if interrupted:
            run["interruptions"] += 1
            by = run["interruptions_by_attempt"]
            by[str(attempt)] = by.get(str(attempt), 0) + 1
        return RecordResult(outcome="recorded", record=json.loads(json.dumps(run, default=sorted)))

    def forget(self, run_id, key, *, attempt, interrupted):
        run = self.runs[run_id]
        run["seen_events"].discard(key)
        if interrupted:
            run["interruptions"] -= 1
            run["interruptions_by_attempt"][str(attempt)] -= 1


class Harness:
    def __init__(self, metrics=None, describe_error=None, notify_error=None):
        self.store = FakeStore()
        self.notes = []
        self.described = []
        self.notify_error = notify_error

        def describe(job):
            self.described.append(job)
            if describe_error:
                raise describe_error
            return metrics or []

        def notify(note):
            if self.notify_error:
                raise self.notify_error
            self.notes.append(note)

        self.deps = TrainingEventDeps(store=self.store, notify=notify, describe_metrics=describe)

    def __call__(self, event):
        return handle_training_event(event, self.deps)


def load_handler(name: str):
    """`functions/<name>/app.py`'s lambda_handler (every function's module is called `app`)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"fn_{name}", EVENTS.parent / "functions" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


if __name__ == "__main__":
    for fname, data in fixtures().items():
        (EVENTS / fname).write_text(json.dumps(data, indent=2) + "\n")
        print("wrote", EVENTS / fname)
