"""`yoloops image probe`: what the stack's training image finds on a real instance type, in minutes.

One short on-demand job of the stack's image with `yoloops_mode=probe` (the container reports its host instead
of training: training_container/yoloops_train/probe.py), admitted by the budget gate like any attempt (its
worst case reserved in the ledger, settled from its billed seconds). The report (driver, CUDA, devices and
architectures, /dev/shm, disks, the checkpoint mount, vCPUs, RAM) comes back in model.tar.gz; the image pull
time comes from DescribeTrainingJob. It is recorded in S3 at probes/<job>.json.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from datetime import UTC, datetime
from typing import Any

from yoloops.client import CliError, Stack

PROBE_RUNTIME_SECONDS = 900  # the image pull (several GB) counts towards MaxRuntime; the probe itself takes seconds
PROBE_PREFIX = "probes/"


def _ms(value: Any) -> float | None:
    """A DescribeTrainingJob time (datetime from boto3, epoch ms from the local backend) in epoch seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return value / 1000 if value > 1e11 else float(value)
    return None


def pull_times(description: dict[str, Any], container_started_at: float | None) -> dict[str, float | None]:
    """Seconds of the job's phases from its SecondaryStatusTransitions.

    SageMaker enters `Training` when it starts pulling the image ("Downloading the training image") after
    `Downloading` (the input channels); the container starts when the pull is done, so the pull time is the
    probe process's start minus the Training transition's start (the clocks are NTP-synced).
    """
    starts = {t.get("Status"): _ms(t.get("StartTime")) for t in description.get("SecondaryStatusTransitions") or []}
    training, downloading = starts.get("Training"), starts.get("Downloading")
    pull = round(container_started_at - training, 1) if training and container_started_at else None
    return {"image_pull_s": max(pull, 0.0) if pull is not None else None,
            "input_download_s": round(training - downloading, 1) if training and downloading else None,
            "starting_s": round((downloading or training or 0) - starts["Starting"], 1)
            if starts.get("Starting") and (downloading or training) else None}


def image_uri(stack: Stack) -> str:
    uri = stack.parameter("TrainingImageUri")
    if uri:
        return uri
    repo = stack.info.outputs.get("TrainingImageRepositoryUri")
    if not repo:
        raise CliError(f"stack {stack.info.label} has no TrainingImageRepositoryUri output: is it a yoloops stack?")
    return f"{repo}:{stack.parameter('TrainingImageTag') or 'latest'}"


def _request(stack: Stack, job: str, instance_type: str, runtime: int) -> dict[str, Any]:
    bucket = stack.bucket
    role = stack.info.outputs.get("SageMakerRoleArn")
    if not role:
        raise CliError(f"stack {stack.info.label} has no SageMakerRoleArn output")
    return {
        "TrainingJobName": job,
        "HyperParameters": {"yoloops_mode": "probe"},
        "AlgorithmSpecification": {"TrainingImage": image_uri(stack), "TrainingInputMode": "File"},
        "RoleArn": role,
        # under the prefixes the stack's SageMaker role may already write (runs/*, checkpoints/*)
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/runs/{job}/output/"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": runtime},
        # as a training attempt has it, so the probe sees whether /opt/ml/checkpoints is a mount
        "CheckpointConfig": {"S3Uri": f"s3://{bucket}/checkpoints/{job}/",
                             "LocalPath": "/opt/ml/checkpoints"},
        "Tags": [{"Key": "yoloops:probe", "Value": instance_type}],
    }


def _report(stack: Stack, description: dict[str, Any]) -> dict[str, Any]:
    uri = (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts") or ""
    if not uri.startswith("s3://"):
        return {}
    bucket, key = uri[5:].split("/", 1)
    body = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        member = next((m for m in tar.getmembers() if m.name.lstrip("./") == "probe.json"), None)
        if member is None:
            return {}
        f = tar.extractfile(member)
        return json.loads(f.read()) if f else {}


def run_probe(stack: Stack, instance_type: str | None = None, *, timeout_s: float = 3600, poll_s: float = 5.0,
              now: datetime | None = None) -> dict[str, Any]:
    from yoloops_core.budget import admit_attempt, billable_seconds, training_seconds
    from yoloops_core.ledger import BudgetLedger
    from yoloops_core.prices import UnknownPrice, price_for

    now = now or datetime.now(UTC)
    base = stack.settings()
    itype = instance_type or base.instance_type
    runtime = min(PROBE_RUNTIME_SECONDS, base.max_runtime_seconds)
    settings = base.model_copy(update={"instance_type": itype, "instance_count": 1, "max_runtime_seconds": runtime,
                                       "use_spot": False})
    try:
        price = price_for(settings, stack.store)
    except UnknownPrice as exc:
        raise CliError(str(exc)) from None
    job = f"yoloops-probe-{now:%Y%m%d-%H%M%S}"
    ledger = BudgetLedger(stack.runs_table, stack.client("dynamodb"))
    decision = admit_attempt(job, 1, settings, ledger, use_spot=False, price=price, now=now)
    if not decision.admitted:
        raise CliError(f"budget gate refused the probe on {itype}: {decision.reason}")
    sm = stack.client("sagemaker")
    try:
        sm.create_training_job(**_request(stack, job, itype, decision.max_runtime_seconds))
    except Exception:
        ledger.settle(job, 1, 0.0, 0.0)  # never created: it cost nothing
        raise
    deadline = time.monotonic() + timeout_s
    while True:
        desc = sm.describe_training_job(TrainingJobName=job)
        if desc["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
            break
        if time.monotonic() > deadline:
            raise CliError(f"probe job {job} still {desc['TrainingJobStatus']} after {timeout_s:.0f} s: it keeps "
                           f"its budget reservation until it ends (aws sagemaker stop-training-job "
                           f"--training-job-name {job})")
        time.sleep(poll_s)
    billed = billable_seconds(desc)
    ledger.settle(job, 1, billed, training_seconds(desc))
    report = _report(stack, desc) if desc["TrainingJobStatus"] == "Completed" else {}
    record = {
        "job": job, "instance_type": itype, "image": desc.get("AlgorithmSpecification", {}).get("TrainingImage"),
        "status": desc["TrainingJobStatus"], "failure_reason": desc.get("FailureReason"),
        "billable_seconds": billed, "cost_usd": round(billed * price.hourly_usd / 3600, 6),
        **pull_times(desc, report.get("container_started_at")), "host": report,
        "probed_at": now.isoformat(),
    }
    stack.client("s3").put_object(Bucket=stack.bucket, Key=f"{PROBE_PREFIX}{job}.json",
                                  Body=json.dumps(record, indent=2, default=str).encode(),
                                  ContentType="application/json")
    record["s3_key"] = f"{PROBE_PREFIX}{job}.json"
    return record


def summary_lines(record: dict[str, Any]) -> list[str]:
    """What `yoloops image probe` prints."""
    host = record.get("host") or {}
    gib = 2**30
    lines = [f"probe {record['job']} on {record['instance_type']}: {record['status']}"
             + (f" ({record['failure_reason']})" if record.get("failure_reason") else "")]
    if host:
        devs = ", ".join(f"{d['name']} {d['sm']}{'' if d['has_kernels'] else ' (NO KERNELS)'}"
                         for d in host.get("devices") or []) or "none"
        lines += [
            f"driver {host.get('driver_version') or 'none'}; torch {host.get('torch_version')} CUDA "
            f"{host.get('torch_cuda')} (cuda available: {host.get('cuda_available')}); archs "
            f"{', '.join(host.get('arch_list') or [])}",
            f"GPUs: {devs}",
            f"{host.get('cpus')} vCPUs, RAM {host.get('ram_total_bytes', 0) / gib:.1f} GiB, /dev/shm "
            f"{host.get('shm_bytes', 0) / gib:.2f} GiB; /opt/ml/checkpoints is "
            f"{'a mount point' if host.get('checkpoints_mount_point') else 'not a mount point'}",
            *[f"disk {d['path']}: {d['free_bytes'] / gib:.1f} GiB free of {d['total_bytes'] / gib:.1f} GiB"
              for d in host.get("disks") or []],
        ]
        if host.get("gpu_problem"):
            lines.append(f"a training job here would fail: {host['gpu_problem']}")
    pull = record.get("image_pull_s")
    lines.append(f"image pull {pull if pull is not None else '?'} s, input download "
                 f"{record.get('input_download_s') if record.get('input_download_s') is not None else '?'} s; "
                 f"billed {record['billable_seconds']:.0f} s (${record['cost_usd']:.4f}); "
                 f"recorded at s3://…/{record['s3_key']}")
    return lines
