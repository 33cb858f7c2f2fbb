"""Local SageMaker training backends behind the Step Functions `createTrainingJob.sync` adaptation.

A backend receives the CreateTrainingJob request exactly as the state machine built it, runs (or
scripts) the job, and answers DescribeTrainingJob. Both backends share `TrainingJob` for status
bookkeeping, the DescribeTrainingJob JSON and the SageMaker state-change events.

- `ScriptedTrainingBackend`: tests decide each job's outcome (complete with metrics, fail, stopped
  MaxWaitTimeExceeded, capacity error at create, hold until released) and read back every request.
- `ProcessTrainingBackend`: runs the real `training_container/train.py` as a process against a local
  `/opt/ml`-style directory (SAGEMAKER_BASE_DIR), moving channels, checkpoints and the model archive
  to and from the emulated S3; `interrupt()` kills and restarts a job the way managed spot does.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("yoloops.local.training")

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO_ROOT / "training_container" / "train.py"
ACCOUNT = "123456789012"


class SageMakerApiError(Exception):
    """A CreateTrainingJob API error; Step Functions surfaces it as `SageMaker.<code>`."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _now_ms() -> int:
    return int(time.time() * 1000)


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3 uri: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


@dataclass
class TrainingJob:
    """One training job: the request plus the SageMaker-visible state."""

    request: dict[str, Any]
    region: str = "us-east-1"
    status: str = "InProgress"
    secondary: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    created_ms: int = field(default_factory=_now_ms)
    training_start_ms: int | None = None
    training_end_ms: int | None = None
    last_modified_ms: int = field(default_factory=_now_ms)
    interruptions: int = 0
    model_artifact: str | None = None
    billed_seconds: float | None = None  # scripted billing (Outcome.billable_s)
    trained_seconds: float | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.request["TrainingJobName"]

    @property
    def arn(self) -> str:
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:training-job/{self.name.lower()}"

    @property
    def output_prefix(self) -> str:
        """s3://bucket/prefix/<job>/output/ (SageMaker's layout under S3OutputPath)."""
        base = self.request.get("OutputDataConfig", {}).get("S3OutputPath", "")
        return base.rstrip("/") + f"/{self.name}/output/"

    @property
    def finished(self) -> bool:
        return self.status in ("Completed", "Failed", "Stopped")

    def describe(self) -> dict[str, Any]:
        """DescribeTrainingJob as the `.sync` integration returns it (timestamps in epoch ms)."""
        req = self.request
        out: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
            "HyperParameters": req.get("HyperParameters", {}),
            "AlgorithmSpecification": req.get("AlgorithmSpecification", {}),
            "RoleArn": req.get("RoleArn"),
            "InputDataConfig": req.get("InputDataConfig", []),
            "OutputDataConfig": req.get("OutputDataConfig", {}),
            "ResourceConfig": req.get("ResourceConfig", {}),
            "StoppingCondition": req.get("StoppingCondition", {}),
            "EnableManagedSpotTraining": bool(req.get("EnableManagedSpotTraining", False)),
            "CheckpointConfig": req.get("CheckpointConfig"),
            "Environment": req.get("Environment", {}),
            "CreationTime": self.created_ms,
            "LastModifiedTime": self.last_modified_ms,
            "SecondaryStatusTransitions": list(self.transitions),
        }
        if out["CheckpointConfig"] is None:
            del out["CheckpointConfig"]
        if self.training_start_ms:
            out["TrainingStartTime"] = self.training_start_ms
        if self.training_end_ms:
            out["TrainingEndTime"] = self.training_end_ms
            seconds = max(1, (self.training_end_ms - (self.training_start_ms or self.created_ms)) // 1000)
            out["TrainingTimeInSeconds"] = int(self.trained_seconds if self.trained_seconds is not None
                                               else max(seconds, self.billed_seconds or 0))
            # Managed spot bills less than it runs; locally nothing is saved unless a test scripts it.
            out["BillableTimeInSeconds"] = int(self.billed_seconds if self.billed_seconds is not None else seconds)
        if self.failure_reason:
            out["FailureReason"] = self.failure_reason
        if self.model_artifact:
            out["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifact}
        if self.final_metrics:
            ts = self.training_end_ms or _now_ms()
            out["FinalMetricDataList"] = [
                {"MetricName": k, "Value": float(v), "Timestamp": ts} for k, v in self.final_metrics.items()
            ]
        return out


class TrainingBackend:
    """Base: job registry, status transitions, state-change events. Subclasses run the jobs."""

    def __init__(self) -> None:
        self.jobs: dict[str, TrainingJob] = {}
        self.requests: list[dict[str, Any]] = []  # every CreateTrainingJob, in order, incl. rejected ones
        self._lock = threading.RLock()
        self.s3: Any = None  # boto3 S3 client on the local stack (set by attach)
        self.emit_event: Callable[[dict[str, Any]], None] = lambda detail: None
        self.region = "us-east-1"
        self.base_env: dict[str, str] = dict(os.environ)
        self.stop_requested: set[str] = set()  # StopTrainingJob was called (the job ends Stopped)

    def attach(self, s3: Any, emit_event: Callable[[dict[str, Any]], None], region: str = "us-east-1") -> None:
        # The container's environment: this process's, taken now (Lambda invocations swap os.environ later).
        self.base_env = dict(os.environ)
        self.s3 = s3
        self.emit_event = emit_event
        self.region = region

    # --------------------------------------------------------------- API used by the ASL adaptation
    def create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        request = json.loads(json.dumps(request))
        with self._lock:
            self.requests.append(request)
            name = request.get("TrainingJobName", "")
            if name in self.jobs:
                raise SageMakerApiError("ValidationException", f"Training job names must be unique within an AWS account and region, and a training job with this name already exists (arn:aws:sagemaker:{self.region}:{ACCOUNT}:training-job/{name.lower()})")
            self._validate(request)
            self._before_create(request)
            job = TrainingJob(request=request, region=self.region)
            self.jobs[name] = job
        self._transition(job, "InProgress", "Starting", "Preparing the instances for training")
        self._start(job)
        return {"TrainingJobArn": job.arn}

    def describe_training_job(self, name: str) -> dict[str, Any]:
        with self._lock:
            job = self.jobs.get(name)
            if job is None:
                raise SageMakerApiError("ValidationException", f"Requested resource not found: {name}")
            return job.describe()

    def wait(self, name: str, timeout: float = 60.0) -> TrainingJob:
        deadline = time.monotonic() + timeout
        while name not in self.jobs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"training job {name} was never created")
            time.sleep(0.05)
        job = self.jobs[name]
        if not job.done.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"training job {name} did not finish within {timeout}s")
        return job

    def interrupt(self, name: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot interrupt jobs")

    def stop_training_job(self, name: str) -> dict[str, Any]:
        """StopTrainingJob as SageMaker does it: InProgress -> Stopping (SIGTERM, grace) -> Stopped."""
        with self._lock:
            job = self.jobs.get(name)
            if job is None:
                raise SageMakerApiError("ValidationException", f"Requested resource not found: {name}")
            if job.status != "InProgress":
                raise SageMakerApiError("ValidationException", f"The request was rejected because the training job "
                                                               f"is in status {job.status}.")
            self.stop_requested.add(name)
        self._transition(job, "Stopping", "Stopping", "Stopping the training job")
        self._stop(job)
        return {}

    def _stop(self, job: TrainingJob) -> None:
        """Hook: end the job's work; the job's own thread then finishes it as Stopped."""

    def _finish_stopped(self, job: TrainingJob) -> None:
        self._transition(job, "Stopped", "Stopped", "Training job stopped")

    def close(self) -> None:
        """Stop whatever is still running (stack shutdown)."""

    # --------------------------------------------------------------- for subclasses
    def _validate(self, request: dict[str, Any]) -> None:
        name = request.get("TrainingJobName", "")
        import re

        if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name):
            raise SageMakerApiError("ValidationException", f"1 validation error detected: Value '{name}' at 'trainingJobName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){{0,62}}")
        for key in ("AlgorithmSpecification", "RoleArn", "OutputDataConfig", "ResourceConfig", "StoppingCondition"):
            if not request.get(key):
                raise SageMakerApiError("ValidationException", f"1 validation error detected: {key} is required")
        hp = request.get("HyperParameters") or {}
        bad = [k for k, v in hp.items() if not isinstance(v, str)]
        if bad:
            raise SageMakerApiError("ValidationException", f"HyperParameters values must be strings: {bad}")
        stop = request["StoppingCondition"]
        if request.get("EnableManagedSpotTraining") and not (
            stop.get("MaxWaitTimeInSeconds", 0) >= stop.get("MaxRuntimeInSeconds", 0) > 0
        ):
            raise SageMakerApiError("ValidationException", "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to MaxRuntimeInSeconds")

    def _before_create(self, request: dict[str, Any]) -> None:
        """Hook: raise SageMakerApiError to reject the create (e.g. scripted capacity errors)."""

    def _start(self, job: TrainingJob) -> None:
        raise NotImplementedError

    def _transition(self, job: TrainingJob, status: str, secondary: str, message: str) -> None:
        now = _now_ms()
        with self._lock:
            if job.transitions and "EndTime" not in job.transitions[-1]:
                job.transitions[-1]["EndTime"] = now
            job.transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
            if status in ("Completed", "Failed", "Stopped"):
                job.transitions[-1]["EndTime"] = now
            job.status, job.secondary, job.last_modified_ms = status, secondary, now
            if secondary == "Training" and job.training_start_ms is None:
                job.training_start_ms = now
            if status in ("Completed", "Failed", "Stopped"):
                job.training_end_ms = now
            detail = job.describe()
        try:
            self.emit_event(detail)
        except Exception:  # events are best effort (as in AWS); never break the job
            log.exception("could not emit the state-change event for %s", job.name)
        if job.finished:
            job.done.set()

    def _finish_completed(self, job: TrainingJob, metrics: dict[str, float], model_archive: bytes) -> None:
        bucket, key = _split_s3(job.output_prefix + "model.tar.gz")
        self.s3.put_object(Bucket=bucket, Key=key, Body=model_archive)
        with self._lock:
            job.model_artifact = f"s3://{bucket}/{key}"
            job.final_metrics = dict(metrics)
        self._transition(job, "InProgress", "Uploading", "Uploading generated training model")
        self._transition(job, "Completed", "Completed", "Training job completed")

    def _finish_failed(self, job: TrainingJob, reason: str, status: str = "Failed", secondary: str = "Failed") -> None:
        with self._lock:
            job.failure_reason = reason
        self._transition(job, status, secondary, reason)


def _die_with_parent() -> Callable[[], None] | None:
    """preexec_fn for the container process: SIGKILL it when the stack's process dies (Linux).

    libc is loaded here, in the parent: between fork and exec the child must not import or take locks.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def model_archive(files: dict[str, bytes]) -> bytes:
    """A model.tar.gz like SageMaker makes from /opt/ml/model."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# =================================================================== scripted (tests)

@dataclass
class Outcome:
    """What a scripted job does. Build with the helpers below."""

    kind: str  # complete | fail | stopped | capacity
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    secondary: str = ""
    hold: bool = False  # stay InProgress/Training until release(job)
    duration_s: float = 0.0
    # What DescribeTrainingJob reports as billed / trained seconds (default: the wall time it took);
    # lets a test bill an hour in a second, or show a spot saving (billable < training).
    billable_s: float | None = None
    training_s: float | None = None
    stopping_s: float = 0.0  # how long StopTrainingJob leaves the job Stopping (SIGTERM grace, upload)


def complete(metrics: dict[str, float], *, hold: bool = False, duration_s: float = 0.0) -> Outcome:
    return Outcome("complete", metrics=dict(metrics), hold=hold, duration_s=duration_s)


def fail(reason: str, *, hold: bool = False) -> Outcome:
    return Outcome("fail", reason=reason, hold=hold)


def spot_max_wait_exceeded(reason: str = "Training job was stopped because managed spot capacity was not available within the maximum wait time (MaxWaitTimeInSeconds).",
                           *, billable_seconds: float | None = None) -> Outcome:
    return Outcome("stopped", reason=reason, secondary="MaxWaitTimeExceeded", billable_s=billable_seconds)


def capacity_error(message: str = "The account-level service limit 'ml.g5.xlarge for spot training job usage' is 0 Instances, with current utilization of 0 Instances and a request delta of 1 Instances.") -> Outcome:
    return Outcome("capacity", reason=message)


class ScriptedTrainingBackend(TrainingBackend):
    """Each job's outcome is scripted by the test, by job name or in creation order."""

    def __init__(self) -> None:
        super().__init__()
        self._by_name: dict[str, Outcome] = {}
        self._in_order: list[Outcome] = []
        self._release: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._pending: dict[str, Outcome] = {}

    def script(self, job_name: str, outcome: Outcome) -> None:
        self._by_name[job_name] = outcome

    def then(self, *outcomes: Outcome) -> ScriptedTrainingBackend:
        """Outcomes for the next jobs, in creation order (when no job name matches)."""
        self._in_order.extend(outcomes)
        return self

    def release(self, job_name: str) -> None:
        self._release.setdefault(job_name, threading.Event()).set()

    def _stop(self, job: TrainingJob) -> None:
        self.release(job.name)  # a held job wakes up, sees the stop and ends Stopped

    def reset(self) -> None:
        for ev in self._release.values():
            ev.set()
        self.jobs.clear()
        self.requests.clear()
        self._by_name.clear()
        self._in_order.clear()
        self._release.clear()

    @property
    def job_names(self) -> list[str]:
        return [r.get("TrainingJobName") for r in self.requests]

    def _outcome_for(self, name: str) -> Outcome:
        if name in self._by_name:
            return self._by_name.pop(name)
        if self._in_order:
            return self._in_order.pop(0)
        return fail(f"no outcome scripted for training job {name}")

    def _before_create(self, request: dict[str, Any]) -> None:
        name = request["TrainingJobName"]
        outcome = self._outcome_for(name)
        if outcome.kind == "capacity":
            raise SageMakerApiError("ResourceLimitExceeded", outcome.reason)
        self._pending[name] = outcome

    def _start(self, job: TrainingJob) -> None:
        outcome = self._pending.pop(job.name)
        self._release.setdefault(job.name, threading.Event())
        t = threading.Thread(target=self._run, args=(job, outcome), name=f"scripted-{job.name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _run(self, job: TrainingJob, outcome: Outcome) -> None:
        job.billed_seconds, job.trained_seconds = outcome.billable_s, outcome.training_s
        try:
            self._transition(job, "InProgress", "Downloading", "Downloading input data")
            self._transition(job, "InProgress", "Training", "Training image download completed. Training in progress.")
            if outcome.hold:
                self._release[job.name].wait()
            if outcome.duration_s:
                time.sleep(outcome.duration_s)
            if job.name in self.stop_requested:
                time.sleep(outcome.stopping_s)
                self._finish_stopped(job)
            elif outcome.kind == "complete":
                files = {
                    "best.pt": b"yoloops-scripted-weights:" + job.name.encode(),
                    "metrics.json": json.dumps(outcome.metrics).encode(),
                }
                self._finish_completed(job, outcome.metrics, model_archive(files))
            elif outcome.kind == "stopped":
                self._finish_failed(job, outcome.reason, status="Stopped", secondary=outcome.secondary or "Stopped")
            else:
                self._finish_failed(job, outcome.reason or "AlgorithmError: scripted failure")
        except Exception as exc:
            log.exception("scripted job %s crashed", job.name)
            self._finish_failed(job, f"InternalServerError: {exc}")


# =================================================================== process (demo, slow tests)

class ProcessTrainingBackend(TrainingBackend):
    """Runs training_container/train.py as a subprocess per job, SageMaker-style."""

    def __init__(self, workdir: Path | str, script: Path | str = TRAIN_SCRIPT, python: str = sys.executable,
                 extra_env: dict[str, str] | None = None, checkpoint_sync_s: float = 1.0):
        super().__init__()
        self.workdir = Path(workdir).resolve()  # the job process runs in its own cwd
        self.script = Path(script)
        self.python = python
        self.extra_env = dict(extra_env or {})
        self.checkpoint_sync_s = checkpoint_sync_s
        self._procs: dict[str, subprocess.Popen] = {}
        self._interrupted: set[str] = set()
        self._timed_out: set[str] = set()
        self.stop_grace_s = 30.0
        self._threads: list[threading.Thread] = []
        self.logs_client: Any = None  # CloudWatch Logs client (optional, set by the stack)
        atexit.register(self.close)  # no training process outlives the stack

    def job_dir(self, name: str) -> Path:
        return self.workdir / "jobs" / name

    def log_path(self, name: str) -> Path:
        return self.job_dir(name) / "output" / "train.log"

    def _start(self, job: TrainingJob) -> None:
        t = threading.Thread(target=self._supervise, args=(job,), name=f"train-{job.name}", daemon=True)
        self._threads.append(t)
        t.start()

    # ----------------------------------------------------------- S3 <-> local
    def _download_prefix(self, uri: str, dest: Path) -> int:
        bucket, prefix = _split_s3(uri)
        count = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                rel = key[len(prefix):].lstrip("/") if key != prefix else Path(key).name
                if not rel or key.endswith("/"):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, key, str(target))
                count += 1
        return count

    def _download_manifest(self, uri: str, dest: Path) -> int:
        """A ManifestFile channel as SageMaker reads it: [{"prefix": "s3://b/p/"}, "rel", ...] -> exactly those
        objects, each at its path relative to the prefix; a listed key that is missing fails the job."""
        bucket, key = _split_s3(uri)
        entries = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix_uri = entries[0]["prefix"]
        src_bucket, prefix = _split_s3(prefix_uri)
        for rel in entries[1:]:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.s3.download_file(src_bucket, prefix + rel, str(target))
            except Exception as exc:
                raise SageMakerApiError("ClientError", f"ClientError: Failed to download data. Manifest file "
                                        f"{uri} lists {prefix_uri}{rel}, which could not be read: {exc}") from exc
        return len(entries) - 1

    def _upload_dir(self, src: Path, uri: str, known: dict[str, float] | None = None) -> None:
        bucket, prefix = _split_s3(uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src).as_posix()
            mtime = path.stat().st_mtime
            # Skip files still being written: a body that changes length mid-request hangs the upload.
            if known is not None and (known.get(rel) == mtime or time.time() - mtime < 0.2):
                continue
            # Read once, send bytes: the length S3 sees is the length sent, even if the file moves on.
            data = path.read_bytes()
            if known is not None:
                if path.stat().st_mtime != mtime:
                    continue  # rewritten while we read it: next round
                known[rel] = mtime
            self.s3.put_object(Bucket=bucket, Key=prefix + rel, Body=data)

    def _prepare(self, job: TrainingJob, base: Path) -> None:
        """Fresh /opt/ml-style tree: channels, hyperparameters, checkpoints from S3 (resume)."""
        if base.exists():
            for sub in ("input", "model", "checkpoints"):
                shutil.rmtree(base / sub, ignore_errors=True)
            (base / "output" / "failure").unlink(missing_ok=True)
        config = base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (base / "model").mkdir(parents=True, exist_ok=True)
        (base / "output" / "data").mkdir(parents=True, exist_ok=True)
        (base / "checkpoints").mkdir(parents=True, exist_ok=True)
        req = job.request
        (config / "hyperparameters.json").write_text(json.dumps(req.get("HyperParameters", {})))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        channels = {}
        for channel in req.get("InputDataConfig", []):
            name = channel["ChannelName"]
            source = channel["DataSource"]["S3DataSource"]
            uri = source["S3Uri"]
            dest = base / "input" / "data" / name
            dest.mkdir(parents=True, exist_ok=True)
            if source.get("S3DataType") == "ManifestFile":
                n = self._download_manifest(uri, dest)
            else:
                n = self._download_prefix(uri, dest)
            if n == 0:
                raise SageMakerApiError("ClientError", f"ClientError: No S3 objects found under S3 URL \"{uri}\" given in input data source. Please ensure that the bucket exists in the selected region, that objects exist under that S3 prefix, and that the role has permission to read the objects.")
            channels[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        ckpt = req.get("CheckpointConfig") or {}
        if ckpt.get("S3Uri"):
            self._download_prefix(ckpt["S3Uri"], base / "checkpoints")

    # ----------------------------------------------------------- the job
    def _supervise(self, job: TrainingJob) -> None:
        base = self.job_dir(job.name)
        base.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path(job.name)
        try:
            while True:
                self._transition(job, "InProgress", "Downloading", "Downloading input data")
                try:
                    self._prepare(job, base)
                except SageMakerApiError as exc:
                    self._finish_failed(job, exc.message)
                    return
                self._transition(job, "InProgress", "Training", "Training image download completed. Training in progress.")
                rc = self._run_process(job, base, log_file)
                if job.name in self.stop_requested:
                    self._interrupted.discard(job.name)
                    self._sync_checkpoints(job, base, None)
                    self._finish_stopped(job)
                    return
                if job.name in self._interrupted:
                    # Managed spot: the instance is reclaimed, the job goes back to Starting and resumes
                    # from the checkpoints already in S3.
                    self._interrupted.discard(job.name)
                    job.interruptions += 1
                    self._transition(job, "InProgress", "Interrupted", "Training job interrupted: spot capacity reclaimed")
                    self._transition(job, "InProgress", "Starting", "Restarting training after spot interruption")
                    continue
                break
            self._sync_checkpoints(job, base, None)
            log.info("checkpoints of %s synced", job.name)
            failure = base / "output" / "failure"
            metrics = self._final_metrics(log_file)
            if job.name in self._timed_out:
                with self._lock:
                    job.final_metrics = metrics
                self._finish_failed(job, "Training job reached the maximum runtime (MaxRuntimeInSeconds) and was stopped",
                                    status="Stopped", secondary="MaxRuntimeExceeded")
                return
            if rc != 0 or failure.exists():
                reason = failure.read_text().strip() if failure.exists() else ""
                self._finish_failed(job, reason or f"AlgorithmError: training exited with code {rc}")
                return
            files = {p.relative_to(base / "model").as_posix(): p.read_bytes()
                     for p in sorted((base / "model").rglob("*")) if p.is_file()}
            self._finish_completed(job, metrics, model_archive(files))
        except Exception as exc:
            log.exception("training job %s crashed in the local backend", job.name)
            self._finish_failed(job, f"InternalServerError: {exc}")

    def _run_process(self, job: TrainingJob, base: Path, log_file: Path) -> int:
        env = dict(self.base_env)
        env.update(self.extra_env)
        env.update(job.request.get("Environment") or {})
        env["SAGEMAKER_BASE_DIR"] = str(base)
        env["TRAINING_JOB_NAME"] = job.name
        env["PYTHONUNBUFFERED"] = "1"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            proc = subprocess.Popen([self.python, str(self.script)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=str(base), start_new_session=True, preexec_fn=_die_with_parent())
            self._procs[job.name] = proc
            known: dict[str, float] = {}
            max_runtime = float((job.request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or 0)
            started = time.monotonic()
            signalled = False
            while proc.poll() is None:
                time.sleep(self.checkpoint_sync_s)
                if job.name not in self._interrupted:
                    self._sync_checkpoints(job, base, known)
                if max_runtime and time.monotonic() - started > max_runtime and job.name not in self._timed_out:
                    self._timed_out.add(job.name)
                    self._terminate(proc)
                if job.name in self.stop_requested and not signalled:  # StopTrainingJob
                    signalled = True
                    self._terminate(proc)
            self._procs.pop(job.name, None)
            # A container's end kills whatever the entrypoint left running (e.g. a stuck loader worker).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        log.info("training process of %s exited with %s", job.name, proc.returncode)
        self._push_logs(job, log_file)
        log.info("logs of %s copied", job.name)
        return proc.returncode

    def _terminate(self, proc: subprocess.Popen) -> None:
        # SageMaker's stop: SIGTERM (the container saves and exits), SIGKILL after the grace period.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        threading.Timer(self.stop_grace_s, self._kill_if_alive, args=(proc,)).start()

    @staticmethod
    def _kill_if_alive(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _sync_checkpoints(self, job: TrainingJob, base: Path, known: dict[str, float] | None) -> None:
        uri = (job.request.get("CheckpointConfig") or {}).get("S3Uri")
        if uri and (base / "checkpoints").exists():
            try:
                self._upload_dir(base / "checkpoints", uri, known)
            except Exception:  # a file being written right now: next round picks it up
                log.debug("checkpoint sync of %s deferred", job.name, exc_info=True)

    @staticmethod
    def _final_metrics(log_file: Path) -> dict[str, float]:
        from yoloops_core.metrics import parse_metric_lines

        if not log_file.exists():
            return {}
        final: dict[str, float] = {}
        for row in parse_metric_lines(log_file.read_text(errors="replace")):
            final.update(row)  # SageMaker keeps the last value of each metric
        return final

    def _push_logs(self, job: TrainingJob, log_file: Path) -> None:
        if self.logs_client is None or not log_file.exists():
            return
        group, stream = "/aws/sagemaker/TrainingJobs", f"{job.name}/algo-1-{job.created_ms // 1000}"
        try:
            with contextlib.suppress(self.logs_client.exceptions.ResourceAlreadyExistsException):
                self.logs_client.create_log_group(logGroupName=group)
            with contextlib.suppress(self.logs_client.exceptions.ResourceAlreadyExistsException):
                self.logs_client.create_log_stream(logGroupName=group, logStreamName=stream)
            lines = log_file.read_text(errors="replace").splitlines()[-5000:]
            now = _now_ms()
            events = [{"timestamp": now, "message": line} for line in lines if line]
            for i in range(0, len(events), 1000):
                self.logs_client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events[i:i + 1000])
        except Exception:
            log.warning("could not copy the logs of %s to CloudWatch Logs", job.name, exc_info=True)

    # ----------------------------------------------------------- spot interruption
    def interrupt(self, name: str) -> None:
        """Kill the job's process like a reclaimed spot instance; the supervisor restarts it."""
        proc = self._procs.get(name)
        job = self.jobs.get(name)
        if job is None:
            raise KeyError(f"no training job named {name}")
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"training job {name} is not running (status {job.status}/{job.secondary})")
        self._interrupted.add(name)
        os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        for proc in list(self._procs.values()):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


__all__ = [
    "Outcome",
    "ProcessTrainingBackend",
    "SageMakerApiError",
    "ScriptedTrainingBackend",
    "TrainingBackend",
    "TrainingJob",
    "capacity_error",
    "complete",
    "fail",
    "model_archive",
    "spot_max_wait_exceeded",
]
