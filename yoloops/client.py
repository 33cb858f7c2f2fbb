"""How the CLI finds a yoloops stack and talks to it: the same calls against AWS and the local stack.

Stack discovery:
  - local: `--local DIR` or `YOLOOPS_LOCAL=DIR` -> `<DIR>/stack.json` written by `yoloops local up`
    ({endpoint_url, region, outputs, control_url}); every client gets that endpoint_url.
  - AWS: `--stack NAME` (default `yoloops-dev`, env `YOLOOPS_STACK`) and `--region` ->
    CloudFormation DescribeStacks outputs (keys in docs/architecture.md "Stack outputs").

The CLI picks its endpoint and region at run time, which yoloops_core.aws.client() (one process-wide
default session, for Lambda) cannot express, so this module is the CLI's one client factory.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from yoloops_core.models import (
    DatasetRef,
    EventType,
    iso,
    job_name,
    run_id_for_dataset,
    utcnow,
)

DEFAULT_STACK = "yoloops-dev"
DEFAULT_LOCAL_DIR = ".local"
STACK_FILE = "stack.json"
REQUIRED_OUTPUTS = ("ArtifactsBucketName", "RunsTableName", "NotificationsTopicArn", "TrainingStateMachineArn")
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# Template parameter -> Settings field, for figures the CLI shows the way the functions compute them.
PARAMETER_SETTINGS = {
    "MonthlyBudgetUsd": "monthly_budget_usd",
    "PromotionMetric": "promotion_metric",
    "MinImprovement": "min_improvement",
    "InstanceType": "instance_type",
    "InstanceCount": "instance_count",
    "MaxRuntimeSeconds": "max_runtime_seconds",
    "HourlyPriceOverrideUsd": "hourly_price_override_usd",
}


class CliError(Exception):
    """A problem the user can act on; the CLI prints the message and exits with `exit_code`."""

    exit_code = 1


class BadInput(CliError):
    """A path or value on the command line that cannot work (exit 2, like a usage error)."""

    exit_code = 2


class StackNotFound(CliError):
    pass


class StackNotRunning(CliError):
    pass


class NotFound(CliError):
    pass


# ---------------------------------------------------------------- discovery

@dataclass(frozen=True)
class StackInfo:
    label: str  # "local:<dir>" or the CloudFormation stack name
    region: str
    outputs: dict[str, str]
    endpoint_url: str | None = None
    control_url: str | None = None
    workdir: Path | None = None
    parameters: dict[str, str] = field(default_factory=dict)  # template parameters the stack runs with

    @property
    def local(self) -> bool:
        return self.endpoint_url is not None


def _port_open(url: str, timeout: float = 1.0) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def load_local_stack(workdir: str | Path) -> StackInfo:
    """Read `<workdir>/stack.json`; refuse clearly when no local stack is there or it is not answering."""
    workdir = Path(workdir)
    path = workdir / STACK_FILE
    if not path.is_file():
        raise StackNotFound(
            f"no local stack found in {workdir}/ (no {STACK_FILE}): start it with `yoloops local up --dir {workdir}`"
        )
    try:
        data = json.loads(path.read_text())
        info = StackInfo(
            label=f"local:{workdir}",
            region=data.get("region") or "us-east-1",
            outputs=dict(data["outputs"]),
            endpoint_url=data["endpoint_url"],
            control_url=data.get("control_url"),
            workdir=workdir,
            parameters={k: str(v) for k, v in (data.get("parameters") or {}).items()},
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StackNotFound(f"{path} is not a local stack description ({exc})") from exc
    if not _port_open(info.endpoint_url or ""):
        raise StackNotRunning(
            f"the local stack in {workdir}/ is not running ({info.endpoint_url} refused the connection): "
            "start it with `yoloops local up`"
        )
    return info


def describe_aws_stack(name: str, region: str | None = None, session: Any = None) -> StackInfo:
    import boto3
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    session = session or boto3.session.Session(region_name=region)
    try:
        cfn = session.client("cloudformation")
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise StackNotFound(
                f"no CloudFormation stack named {name!r} in {session.region_name}: deploy it with `sam deploy`, "
                "pass --stack/--region, or use the local stack (`yoloops local up`, then --local)"
            ) from exc
        raise
    except NoRegionError as exc:
        raise StackNotFound("no AWS region configured: pass --region or set AWS_REGION") from exc
    except NoCredentialsError as exc:
        raise StackNotFound("no AWS credentials found (or use the local stack: `yoloops --local ...`)") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stacks[0].get("Parameters", [])}
    return StackInfo(label=name, region=session.region_name, outputs=outputs, parameters=parameters)


def resolve_stack(local: str | None = None, stack: str | None = None, region: str | None = None) -> StackInfo:
    """--local wins, then YOLOOPS_LOCAL, then the AWS stack (--stack, YOLOOPS_STACK, default)."""
    local = local or os.environ.get("YOLOOPS_LOCAL") or None
    if local:
        return load_local_stack(local)
    return describe_aws_stack(stack or os.environ.get("YOLOOPS_STACK") or DEFAULT_STACK, region)


# ---------------------------------------------------------------- helpers

def default_version(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


@dataclass
class PushResult:
    dataset: str
    version: str
    run_id: str
    files: int
    bytes: int
    manifest_key: str
    uploaded: list[str] = field(default_factory=list)  # keys in completion order, manifest last


@dataclass
class WaitResult:
    run_id: str
    execution_status: str  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED | NOT_STARTED
    run: dict[str, Any] | None


# ---------------------------------------------------------------- the stack

class Stack:
    """AWS access for one stack (AWS or local), through boto3 clients bound to its endpoint/region."""

    def __init__(self, info: StackInfo, session: Any = None):
        import boto3

        self.info = info
        if session is None:
            creds: dict[str, str] = {}
            if info.local and not os.environ.get("AWS_ACCESS_KEY_ID"):
                # moto accepts any credentials; users of the local stack need no AWS account.
                creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
            session = boto3.session.Session(region_name=info.region, **creds)
        self.session = session
        self._clients: dict[str, Any] = {}
        missing = [k for k in REQUIRED_OUTPUTS if not info.outputs.get(k)]
        if missing:
            raise StackNotFound(f"stack {info.label} lacks the outputs {missing}: is it a yoloops stack?")

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            config = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32)
            self._clients[service] = self.session.client(
                service, endpoint_url=self.info.endpoint_url, region_name=self.info.region, config=config
            )
        return self._clients[service]

    # outputs
    @property
    def bucket(self) -> str:
        return self.info.outputs["ArtifactsBucketName"]

    @property
    def runs_table(self) -> str:
        return self.info.outputs["RunsTableName"]

    @property
    def topic_arn(self) -> str:
        return self.info.outputs["NotificationsTopicArn"]

    @property
    def state_machine_arn(self) -> str:
        return self.info.outputs["TrainingStateMachineArn"]

    def execution_arn(self, run_id: str) -> str:
        # arn:aws:states:<region>:<account>:stateMachine:<name> -> ...:execution:<name>:<run id>
        return self.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + run_id

    def links(self, run_id: str, job: str | None = None) -> dict[str, str]:
        if self.info.local:
            out = {"execution": self.execution_arn(run_id)}
            if job:
                out["training_job"] = job
                out["logs"] = f"yoloops --local {self.info.workdir} logs {run_id}"
            return out
        r = self.info.region
        base = f"https://{r}.console.aws.amazon.com"
        out = {"execution": f"{base}/states/home?region={r}#/v2/executions/details/{self.execution_arn(run_id)}"}
        if job:
            out["training_job"] = f"{base}/sagemaker/home?region={r}#/jobs/{job}"
            group = quote(quote(TRAINING_LOG_GROUP, safe=""), safe="").replace("%", "$")
            out["logs"] = f"{base}/cloudwatch/home?region={r}#logsV2:log-groups/log-group/{group}$3FlogStreamNameFilter$3D{job}"
        return out

    # ------------------------------------------------------------ store
    @cached_property
    def store(self) -> Any:
        """yoloops_core's RunStore over this stack's table, with this stack's DynamoDB client."""
        from yoloops_core.store import RunStore

        return RunStore(self.runs_table, self.client("dynamodb"))

    def get_run(self, run_id: str) -> dict[str, Any]:
        record = self.store.get_run(run_id)
        if record is None:
            raise NotFound(f"unknown run {run_id!r}: `yoloops runs` lists the runs of this stack")
        return record

    def list_runs(self, dataset: str | None = None, months: int = 2, limit: int = 50) -> list[dict[str, Any]]:
        """Runs started in the last `months` calendar months (the by_month index), newest first."""
        from yoloops_core.store import previous_month

        month = iso(utcnow())[:7]
        runs: list[dict[str, Any]] = []
        for _ in range(max(1, months)):
            runs.extend(self.store.list_runs_by_month(month))
            month = previous_month(month)
        if dataset:
            runs = [r for r in runs if r.get("dataset") == dataset]
        runs.sort(key=lambda r: r.get("started_at") or "", reverse=True)
        return runs[:limit]

    def get_champion(self, dataset: str) -> dict[str, Any] | None:
        return self.store.get_champion(dataset)

    def champion_history(self, dataset: str) -> list[dict[str, Any]]:
        return self.store.champion_history(dataset)

    def known_datasets(self) -> set[str]:
        return {r["dataset"] for r in self.list_runs(months=12, limit=10_000) if r.get("dataset")}

    def require_champion(self, dataset: str) -> dict[str, Any]:
        champion = self.get_champion(dataset)
        if champion is None:
            known = sorted(self.known_datasets())
            hint = f" (datasets with runs: {', '.join(known)})" if known else " (no runs yet)"
            raise NotFound(f"dataset {dataset!r} has no champion{hint}")
        return champion

    # ------------------------------------------------------------ datasets
    def push_dataset(
        self,
        local_dir: str | Path,
        name: str,
        version: str,
        workers: int = 8,
        on_file: Callable[[str, int], None] | None = None,
        weights: str | None = None,
    ) -> PushResult:
        """Upload a dataset version: every file in parallel, then manifest.json LAST.

        The manifest is the completion marker the S3 trigger fires on, so it must only land once
        every file it lists is readable in S3.
        """
        from yoloops_core.dataset import MANIFEST_NAME, build_manifest

        root = Path(local_dir)
        manifest = build_manifest(root, name, version)
        files = [f for f in manifest["files"] if f["path"] != MANIFEST_NAME]
        manifest["files"] = files
        if weights:  # base weights of this version's run (yoloops_core.weights reads it at ValidateDataset)
            manifest["weights"] = weights
        prefix = f"datasets/{name}/{version}/"
        s3 = self.client("s3")
        # The run id carries the content hash of the listing: known once everything is uploaded.
        result = PushResult(name, version, "", len(files), sum(int(f["size"]) for f in files),
                            prefix + MANIFEST_NAME)

        def upload(entry: dict[str, Any]) -> tuple[str, int]:
            key = prefix + entry["path"]
            s3.upload_file(str(root / entry["path"]), self.bucket, key)
            return key, int(entry["size"])

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(upload, f) for f in files]
            for fut in as_completed(futures):
                key, size = fut.result()  # any failed upload raises here, before the manifest is written
                result.uploaded.append(key)
                if on_file:
                    on_file(key, size)
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        s3.put_object(Bucket=self.bucket, Key=result.manifest_key, Body=body, ContentType="application/json")
        result.uploaded.append(result.manifest_key)
        result.run_id = self.dataset_run_id(DatasetRef(name=name, version=version))
        return result

    def dataset_run_id(self, dataset: DatasetRef) -> str:
        """The run id the S3 trigger gives this upload as it is in S3 now (same listing hash)."""
        from yoloops_core.run_ids import listing_hash

        entries = []
        for page in self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=dataset.key):
            entries += [(o["Key"][len(dataset.key):], int(o["Size"]), o["ETag"]) for o in page.get("Contents", [])]
        return run_id_for_dataset(dataset, listing_hash(entries))

    # ------------------------------------------------------------ executions
    def describe_execution(self, run_id: str) -> dict[str, Any] | None:
        sfn = self.client("stepfunctions")
        try:
            return sfn.describe_execution(executionArn=self.execution_arn(run_id))
        except sfn.exceptions.ExecutionDoesNotExist:
            return None

    def execution_states(self, run_id: str) -> list[dict[str, Any]]:
        """The states the run's execution went through, in order, from its execution history."""
        sfn = self.client("stepfunctions")
        states: list[dict[str, Any]] = []
        try:
            pages = sfn.get_paginator("get_execution_history").paginate(executionArn=self.execution_arn(run_id))
            for page in pages:
                for ev in page["events"]:
                    if ev["type"].endswith("StateEntered"):
                        states.append({"name": ev["stateEnteredEventDetails"]["name"],
                                       "entered_at": iso(ev["timestamp"]), "type": ev["type"]})
                    elif ev["type"] == "ExecutionFailed":
                        d = ev.get("executionFailedEventDetails", {})
                        states.append({"name": "(execution failed)", "entered_at": iso(ev["timestamp"]),
                                       "type": ev["type"], "error": d.get("error"), "cause": d.get("cause")})
        except sfn.exceptions.ExecutionDoesNotExist:
            return []
        return states

    def wait_for_run(
        self,
        run_id: str,
        timeout: float = 1800,
        poll: float = 2.0,
        start_timeout: float = 120,
        on_poll: Callable[[str, dict[str, Any] | None], None] | None = None,
    ) -> WaitResult:
        """Wait for the run's execution to appear (the S3 trigger starts it) and then to finish."""
        t0 = time.monotonic()
        status = "NOT_STARTED"
        while True:
            elapsed = time.monotonic() - t0
            desc = self.describe_execution(run_id)
            status = desc["status"] if desc else "NOT_STARTED"
            if on_poll:
                on_poll(status, desc)
            if desc and status != "RUNNING":
                break
            if (desc is None and elapsed > start_timeout) or elapsed > timeout:
                break
            time.sleep(poll)
        record = None
        with contextlib.suppress(NotFound):
            record = self.get_run(run_id)
        return WaitResult(run_id, status, record)

    # ------------------------------------------------------------ logs
    def job_logs(self, run_id: str) -> Iterator[tuple[str, str]]:
        """(stream, line) for every training job of the run, from CloudWatch Logs."""
        logs = self.client("logs")
        run = self.get_run(run_id)
        jobs = list(run.get("job_names") or []) or [job_name(run_id, n) for n in range(1, int(run.get("attempts") or 0) + 1)]
        for job in jobs:
            try:
                streams = logs.describe_log_streams(logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=job + "/")
            except logs.exceptions.ResourceNotFoundException:
                return
            for stream in streams.get("logStreams", []):
                kwargs: dict[str, Any] = {"logGroupName": TRAINING_LOG_GROUP,
                                          "logStreamName": stream["logStreamName"], "startFromHead": True}
                while True:
                    page = logs.get_log_events(**kwargs)
                    for ev in page["events"]:
                        yield stream["logStreamName"], ev["message"]
                    if not page["events"] or page.get("nextForwardToken") == kwargs.get("nextToken"):
                        break
                    kwargs["nextToken"] = page["nextForwardToken"]

    # ------------------------------------------------------------ notifications
    def notify(self, event_type: EventType, dataset: str, run_id: str | None, text: str, **extra: Any) -> str:
        from yoloops_core.notifications import Notification, publish

        note = Notification(event_type=event_type, dataset=dataset, run_id=run_id, text=text, **extra)
        return publish(note, self.topic_arn, self.client("sns"))

    # ------------------------------------------------------------ budget
    def parameter(self, name: str) -> str | None:
        return self.info.parameters.get(name)

    def settings(self) -> Any:
        """yoloops_core Settings as the stack's functions see them (outputs + template parameters)."""
        from yoloops_core.config import Settings

        values: dict[str, Any] = {
            "artifacts_bucket": self.bucket, "runs_table": self.runs_table,
            "notifications_topic_arn": self.topic_arn, "state_machine_arn": self.state_machine_arn,
            "aws_region": self.info.region,
        }
        for param, setting in PARAMETER_SETTINGS.items():
            if self.parameter(param) not in (None, ""):
                values[setting] = self.parameter(param)
        return Settings.model_validate(values)

    def budget(self) -> dict[str, Any]:
        from yoloops_core.budget import budget_summary
        from yoloops_core.ledger import BudgetLedger

        ledger = BudgetLedger(self.runs_table, self.client("dynamodb"))
        data = budget_summary(self.settings(), ledger, self.store).model_dump(mode="json")
        data["price"] = self.price()
        return data

    def price(self) -> dict[str, Any]:
        """The hourly price the budget gate uses now: figure, source, date and age (or why there is none)."""
        from yoloops_core.prices import UnknownPrice, price_for

        settings = self.settings()
        try:
            p = price_for(settings, self.store)
        except UnknownPrice as exc:
            return {"error": str(exc), "instance_type": settings.instance_type, "region": settings.region}
        return {**p.model_dump(mode="json"), "age_days": p.age_days(), "stale": p.stale()}

    # ------------------------------------------------------------ dead-letter queues
    def dlq_urls(self, queue: str | None = None) -> dict[str, str]:
        """Output `<Name>DlqUrl` -> {"name": url}; `queue` picks one (a clear error names the others)."""
        urls = {k[: -len("DlqUrl")].lower(): v for k, v in self.info.outputs.items() if k.endswith("DlqUrl") and v}
        if queue is None:
            return urls
        if queue not in urls:
            raise CliError(f"no dead-letter queue {queue!r} in stack {self.info.label}: {', '.join(sorted(urls))}")
        return {queue: urls[queue]}

    def dlq_list(self, queue: str | None = None) -> list[dict[str, Any]]:
        from yoloops_core import dlq

        return [d.public() for name, url in self.dlq_urls(queue).items()
                for d in dlq.read(self.client("sqs"), name, url)]

    def dlq_redrive(self, queue: str | None = None, message_ids: set[str] | None = None) -> dict[str, Any]:
        from yoloops_core import dlq

        outputs = self.info.outputs
        targets = {kind: outputs[key] for kind, key in (("slack-notifier", "SlackNotifierFunctionName"),
                                                         ("release-writeback", "ReleaseWritebackFunctionName"),
                                                         ("training-events", "TrainingEventsFunctionName"),
                                                         ("reconcile", "ReconcileFunctionName")) if outputs.get(key)}
        out: dict[str, Any] = {"redriven": [], "skipped": []}
        for name, url in self.dlq_urls(queue).items():
            result = dlq.redrive(self.client("sqs"), self.client("lambda"), name, url, targets, message_ids)
            out["redriven"] += result.redriven
            out["skipped"] += result.skipped
        return out
