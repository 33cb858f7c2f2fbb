"""SageMaker hyperparameter tuning jobs on the local stack, on top of the local training backend.

`createHyperParameterTuningJob.sync` lands here (yoloops.local.moto_patches): the tuner draws
MaxNumberOfTrainingJobs settings from the ParameterRanges and runs them as real training jobs of the
attached TrainingBackend (ProcessTrainingBackend trains them), at most MaxParallelTrainingJobs at a time.
Each training job is `<tuning job>-<NNN>-<8 hex>` as on SageMaker, gets the static hyperparameters, its
tuned ones and `_tuning_objective_metric`, and its own checkpoint prefix (`<S3Uri>/<training job>/`).
The best job has the highest (Maximize) or lowest (Minimize) final objective metric.

What is not emulated: Bayesian and Hyperband search. Locally every strategy draws its settings at random
(seeded by the tuning job name, so a sweep repeats), and Hyperband stops no job early.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from yoloops.local.training import ACCOUNT, SageMakerApiError, TrainingBackend, _now_ms

NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}")


@dataclass
class TuningJob:
    request: dict[str, Any]
    region: str
    status: str = "InProgress"
    created_ms: int = field(default_factory=_now_ms)
    ended_ms: int | None = None
    training_jobs: list[str] = field(default_factory=list)
    tuned: dict[str, dict[str, str]] = field(default_factory=dict)
    failure_reason: str | None = None
    stop_requested: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.request["HyperParameterTuningJobName"]

    @property
    def arn(self) -> str:
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:hyper-parameter-tuning-job/{self.name.lower()}"


def draw(ranges: dict[str, Any], rng: random.Random) -> dict[str, str]:
    """One setting from SageMaker ParameterRanges (values as strings, as SageMaker passes them)."""
    out: dict[str, str] = {}
    for r in ranges.get("CategoricalParameterRanges") or []:
        out[r["Name"]] = str(rng.choice(r["Values"]))
    for kind in ("IntegerParameterRanges", "ContinuousParameterRanges"):
        for r in ranges.get(kind) or []:
            lo, hi = float(r["MinValue"]), float(r["MaxValue"])
            if r.get("ScalingType") in ("Logarithmic", "ReverseLogarithmic") and lo > 0:
                value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            else:
                value = rng.uniform(lo, hi)
            out[r["Name"]] = str(round(value)) if kind == "IntegerParameterRanges" else f"{value:.6g}"
    return out


class LocalTuner:
    """The tuning jobs of one local stack (CreateHyperParameterTuningJob / Describe / ListTrainingJobsFor...)."""

    def __init__(self, training: TrainingBackend, region: str = "us-east-1", job_timeout_s: float = 3600.0):
        self.training = training
        self.region = region
        self.job_timeout_s = job_timeout_s
        self.jobs: dict[str, TuningJob] = {}
        self.by_execution: dict[str, str] = {}  # execution ARN -> its .sync tuning job (StopExecution stops it)
        self._lock = threading.Lock()

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        request = json.loads(json.dumps(request))
        name = str(request.get("HyperParameterTuningJobName") or "")
        if not NAME.fullmatch(name):
            raise SageMakerApiError("ValidationException", f"1 validation error detected: Value '{name}' at "
                                    "'hyperParameterTuningJobName' failed to satisfy constraint: Member must satisfy "
                                    "regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}")
        limits = (request.get("HyperParameterTuningJobConfig") or {}).get("ResourceLimits") or {}
        if not int(limits.get("MaxParallelTrainingJobs") or 0) >= 1 or not int(limits.get("MaxNumberOfTrainingJobs") or 0) >= 1:
            raise SageMakerApiError("ValidationException", "ResourceLimits needs MaxNumberOfTrainingJobs and "
                                    "MaxParallelTrainingJobs >= 1")
        with self._lock:
            if name in self.jobs:
                raise SageMakerApiError("ResourceInUse", f"Hyperparameter tuning job {name} already exists")
            job = TuningJob(request=request, region=self.region)
            self.jobs[name] = job
        threading.Thread(target=self._run, args=(job,), name=f"tuning-{name}", daemon=True).start()
        return {"HyperParameterTuningJobArn": job.arn}

    # ------------------------------------------------------------ running
    def _training_request(self, job: TuningJob, n: int, tuned: dict[str, str]) -> dict[str, Any]:
        d = job.request["TrainingJobDefinition"]
        objective = job.request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
        tail = hashlib.sha256(f"{job.name}-{n}".encode()).hexdigest()[:8]
        name = f"{job.name}-{n:03d}-{tail}"
        checkpoint = dict(d["CheckpointConfig"]) if d.get("CheckpointConfig") else None
        if checkpoint:
            checkpoint["S3Uri"] = checkpoint["S3Uri"].rstrip("/") + f"/{name}/"
        request = {
            "TrainingJobName": name, "AlgorithmSpecification": d["AlgorithmSpecification"], "RoleArn": d["RoleArn"],
            "HyperParameters": {**(d.get("StaticHyperParameters") or {}), **tuned,
                                "_tuning_objective_metric": objective},
            "InputDataConfig": d.get("InputDataConfig") or [], "OutputDataConfig": d["OutputDataConfig"],
            "ResourceConfig": d["ResourceConfig"], "StoppingCondition": d["StoppingCondition"],
            "EnableManagedSpotTraining": bool(d.get("EnableManagedSpotTraining")), "Environment": d.get("Environment") or {},
            "Tags": job.request.get("Tags") or [],
        }
        if checkpoint:
            request["CheckpointConfig"] = checkpoint
        return request

    def _one(self, job: TuningJob, n: int, tuned: dict[str, str]) -> None:
        if job.stop_requested:
            return  # a stopped tuning job starts no more training jobs
        request = self._training_request(job, n, tuned)
        with self._lock:
            job.training_jobs.append(request["TrainingJobName"])
            job.tuned[request["TrainingJobName"]] = tuned
        try:
            self.training.create_training_job(request)
            self.training.wait(request["TrainingJobName"], timeout=self.job_timeout_s)
        except Exception as exc:  # a job that could not start counts as failed, as on SageMaker
            with self._lock:
                job.failure_reason = job.failure_reason or f"{request['TrainingJobName']}: {exc}"

    def _run(self, job: TuningJob) -> None:
        config = job.request["HyperParameterTuningJobConfig"]
        limits = config["ResourceLimits"]
        rng = random.Random(job.name)
        settings = [draw(config.get("ParameterRanges") or {}, rng) for _ in range(int(limits["MaxNumberOfTrainingJobs"]))]
        with ThreadPoolExecutor(max_workers=int(limits["MaxParallelTrainingJobs"])) as pool:
            for n, tuned in enumerate(settings, start=1):
                pool.submit(self._one, job, n, tuned)
        best = self._best(job)
        with self._lock:
            job.status = "Stopped" if job.stop_requested else "Completed" if best is not None else "Failed"
            if best is None:
                job.failure_reason = job.failure_reason or "No training job succeeded"
            job.ended_ms = _now_ms()
        job.done.set()

    # ------------------------------------------------------------ the API's views
    def _objective(self, name: str, metric: str) -> float | None:
        desc = self.training.describe_training_job(name)
        if desc["TrainingJobStatus"] != "Completed":
            return None
        values = [m["Value"] for m in desc.get("FinalMetricDataList") or [] if m["MetricName"] == metric]
        return float(values[-1]) if values else None

    def _summary(self, job: TuningJob, name: str) -> dict[str, Any]:
        objective = job.request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
        desc = self.training.describe_training_job(name)
        value = self._objective(name, objective["MetricName"])
        row = {"TrainingJobName": name, "TrainingJobArn": desc["TrainingJobArn"], "TuningJobName": job.name,
               "CreationTime": desc["CreationTime"], "TrainingJobStatus": desc["TrainingJobStatus"],
               "TunedHyperParameters": job.tuned.get(name, {}),
               "ObjectiveStatus": "Succeeded" if value is not None else
               ("Pending" if desc["TrainingJobStatus"] == "InProgress" else "Failed")}
        for key in ("TrainingStartTime", "TrainingEndTime"):
            if key in desc:
                row[key] = desc[key]
        if value is not None:
            row["FinalHyperParameterTuningJobObjectiveMetric"] = {"Type": objective["Type"],
                                                                  "MetricName": objective["MetricName"], "Value": value}
        return row

    def _best(self, job: TuningJob) -> dict[str, Any] | None:
        rows = [r for r in (self._summary(job, n) for n in list(job.training_jobs))
                if "FinalHyperParameterTuningJobObjectiveMetric" in r]
        if not rows:
            return None
        sign = -1 if job.request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["Type"] == \
            "Minimize" else 1
        return max(rows, key=lambda r: sign * r["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])

    def _get(self, name: str) -> TuningJob:
        job = self.jobs.get(name)
        if job is None:
            raise SageMakerApiError("ResourceNotFound", f"Amazon SageMaker can't find a tuning job with name {name}")
        return job

    def describe(self, name: str) -> dict[str, Any]:
        """DescribeHyperParameterTuningJob (timestamps in epoch ms, as the .sync output)."""
        job = self._get(name)
        statuses = [self.training.describe_training_job(n)["TrainingJobStatus"] for n in list(job.training_jobs)]
        rows = [self._summary(job, n) for n in list(job.training_jobs)]
        out: dict[str, Any] = {
            "HyperParameterTuningJobName": job.name, "HyperParameterTuningJobArn": job.arn,
            "HyperParameterTuningJobConfig": job.request["HyperParameterTuningJobConfig"],
            "TrainingJobDefinition": job.request["TrainingJobDefinition"],
            "HyperParameterTuningJobStatus": job.status, "CreationTime": job.created_ms,
            "LastModifiedTime": job.ended_ms or _now_ms(),
            "TrainingJobStatusCounters": {"Completed": statuses.count("Completed"),
                                          "InProgress": statuses.count("InProgress") + statuses.count("Stopping"),
                                          "RetryableError": 0, "NonRetryableError": statuses.count("Failed"),
                                          "Stopped": statuses.count("Stopped")},
            "ObjectiveStatusCounters": {s: sum(r["ObjectiveStatus"] == s for r in rows)
                                        for s in ("Succeeded", "Pending", "Failed")},
        }
        if job.ended_ms:
            out["HyperParameterTuningEndTime"] = job.ended_ms
        best = self._best(job) if job.status != "InProgress" else None
        if best is not None:
            out["BestTrainingJob"] = best
        if job.failure_reason and job.status == "Failed":
            out["FailureReason"] = job.failure_reason
        return out

    def stop(self, name: str) -> None:
        """StopHyperParameterTuningJob: no new training jobs; the running ones are stopped (Stopping -> Stopped)."""
        job = self._get(name)
        with self._lock:
            if job.status != "InProgress":
                return
            job.stop_requested = True
            job.status = "Stopping"
            running = list(job.training_jobs)
        for n in running:
            with contextlib.suppress(SageMakerApiError):  # it ended meanwhile
                self.training.stop_training_job(n)

    def stop_execution(self, execution_arn: str) -> None:
        """What Step Functions does for a .sync task when its execution is stopped: stop the tuning job."""
        name = self.by_execution.get(execution_arn)
        if name is not None:
            self.stop(name)

    def list_training_jobs(self, name: str) -> list[dict[str, Any]]:
        job = self._get(name)
        return [self._summary(job, n) for n in list(job.training_jobs)]

    def wait(self, name: str, timeout: float = 600.0) -> TuningJob:
        deadline = time.monotonic() + timeout
        while name not in self.jobs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"tuning job {name} was never created")
            time.sleep(0.05)
        if not self.jobs[name].done.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"tuning job {name} did not finish within {timeout}s")
        return self.jobs[name]
