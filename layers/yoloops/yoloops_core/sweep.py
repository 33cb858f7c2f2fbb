"""Budget-capped sweeps: one SageMaker hyperparameter tuning job per sweep (statemachine/sweep.asl.json).

    yoloops sweep shapes@v3 --param 'lr0=1e-4..1e-2:log' --param 'imgsz=512,640,768' --max-jobs 8 --parallel 2

The sweep is a run (execution name = run id `sw-...`, one run record, one Slack thread):
- ValidateDataset validates the version exactly as for any run (`$.request` is a RunRequest);
- `reserve` admits the sweep: N reservations of one job's worst case (attempts 1..N of the run in the
  ledger), all or none, before the tuning job exists; its plan is the run's training plan turned into a
  `TrainingJobDefinition` (spot, checkpoints: SageMaker gives each training job its own prefix under the
  sweep's), the ranges into `ParameterRanges`;
- `Tune` is `createHyperParameterTuningJob.sync`; `best` then settles every reservation from its training
  jobs' BillableTimeInSeconds (unused ones are released), records the leaderboard, posts it in the thread
  and hands the best job to Evaluate / Promote / Notify as the run's one training job.
"""

from __future__ import annotations

import copy
import hashlib
import re
from datetime import datetime
from typing import Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from yoloops_core import budget
from yoloops_core.config import ConfigError, Settings
from yoloops_core.hyperparameters import check_overrides
from yoloops_core.models import AttemptState, EventType, InvalidInput, RunContext, RunStatus, parse_model
from yoloops_core.notifications import Notification, Publisher, publish
from yoloops_core.plan import build_plan
from yoloops_core.pricing import format_usd
from yoloops_core.steps import ImageState, StepError, failure_reason

logger = Logger(child=True)

OBJECTIVE_DIRECTIONS = {"mAP50-95": "Maximize", "mAP50": "Maximize", "precision": "Maximize", "recall": "Maximize"}
STRATEGIES = {"bayesian": "Bayesian", "random": "Random", "hyperband": "Hyperband"}
MAX_TUNING_NAME = 32  # SageMaker's limit for HyperParameterTuningJobName


# ---------------------------------------------------------------- the sweep's ranges

class ParamRange(BaseModel):
    """One `--param`: `name=lo..hi[:log|:linear]` (integer or continuous) or `name=a,b,c` (categorical)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["integer", "continuous", "categorical"]
    min: str | None = None
    max: str | None = None
    scaling: Literal["Auto", "Linear", "Logarithmic"] = "Auto"
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checked(self) -> ParamRange:
        if self.kind == "categorical":
            if not 1 <= len(self.values) <= 30:
                raise ValueError(f"{self.name}: a categorical range takes 1 to 30 values")
            for v in self.values:
                check_overrides({self.name: _scalar(v)}, f"--param {self.name}")
        else:
            lo, hi = float(self.min or "nan"), float(self.max or "nan")
            if not lo < hi:
                raise ValueError(f"{self.name}: {self.min}..{self.max} is not an increasing range")
            if self.scaling == "Logarithmic" and lo <= 0:
                raise ValueError(f"{self.name}: a :log range needs a positive lower bound, not {self.min}")
            for v in (self.min, self.max):
                check_overrides({self.name: int(v) if self.kind == "integer" else float(v)},  # type: ignore[arg-type]
                                f"--param {self.name}")
        return self


def _scalar(raw: str) -> str | int | float | bool:
    from yoloops_core.hyperparameters import scalar

    return scalar(raw)


def parse_param(spec: str) -> ParamRange:
    """`lr0=1e-4..1e-2:log`, `epochs=10..50`, `imgsz=512,640,768`; errors name the spec."""
    name, sep, rest = spec.partition("=")
    name, rest = name.strip(), rest.strip()
    if not sep or not name or not rest:
        raise InvalidInput(f"--param {spec!r}: expected NAME=LO..HI[:log|:linear] or NAME=A,B,C")
    try:
        if ".." in rest:
            body, _, scale = rest.partition(":")
            lo, _, hi = body.partition("..")
            scaling = {"": "Auto", "log": "Logarithmic", "linear": "Linear"}.get(scale.strip().lower())
            if scaling is None:
                raise ValueError(f"unknown scaling {scale!r} (log or linear)")
            is_int = all(re.fullmatch(r"-?\d+", x.strip()) for x in (lo, hi))
            return ParamRange(name=name, kind="integer" if is_int else "continuous", min=lo.strip(), max=hi.strip(),
                              scaling=scaling)  # type: ignore[arg-type]
        values = [v.strip() for v in rest.split(",") if v.strip()]
        return ParamRange(name=name, kind="categorical", values=values)
    except (ValueError, InvalidInput) as exc:
        raise InvalidInput(f"--param {spec!r}: {exc}") from None


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: list[ParamRange] = Field(min_length=1)
    max_jobs: int = Field(ge=1, le=500)
    parallel: int = Field(1, ge=1, le=100)
    strategy: Literal["bayesian", "random", "hyperband"] = "bayesian"

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"a hyperparameter is given twice: {names}")
        if self.parallel > self.max_jobs:
            raise ValueError(f"--parallel {self.parallel} is more than --max-jobs {self.max_jobs}")
        if self.strategy == "hyperband" and "epochs" in names:
            raise ValueError("hyperband decides how many epochs each job trains; epochs cannot be a range too")
        return self


def parameter_ranges(spec: SweepSpec) -> dict[str, list[dict[str, Any]]]:
    """SageMaker's ParameterRanges."""
    out: dict[str, list[dict[str, Any]]] = {"IntegerParameterRanges": [], "ContinuousParameterRanges": [],
                                            "CategoricalParameterRanges": []}
    for p in spec.params:
        if p.kind == "categorical":
            out["CategoricalParameterRanges"].append({"Name": p.name, "Values": list(p.values)})
        else:
            key = "IntegerParameterRanges" if p.kind == "integer" else "ContinuousParameterRanges"
            out[key].append({"Name": p.name, "MinValue": p.min, "MaxValue": p.max, "ScalingType": p.scaling})
    return {k: v for k, v in out.items() if v}


def tuning_job_name(run_id: str, dataset: str, stack_code: str = "") -> str:
    """<= 32 characters, `sw-<dataset>-<hash>[-<stack code>]` (the stack code last: IAM scopes match it)."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:6]
    tail = f"-{digest}" + (f"-{stack_code}" if stack_code else "")
    room = MAX_TUNING_NAME - len("sw-") - len(tail)
    ds = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")[:room].strip("-") or "ds"
    return f"sw-{ds}{tail}"


_SWEEP_JOB = re.compile(r"(sw-[a-z0-9-]+?)-(\d{3})-[0-9a-f]{8}")


def sweep_job_slot(name: str, stack_code: str = "") -> tuple[str, int] | None:
    """(tuning job, NNN) of a sweep's training job `<tuning job>-<NNN>-<8 hex>` (SageMaker's names); NNN is
    the job's reservation (attempt) in the ledger. None for any other job, or another stack's."""
    m = _SWEEP_JOB.fullmatch(name)
    if m is None or (stack_code and not m.group(1).endswith(f"-{stack_code}")):
        return None
    return m.group(1), int(m.group(2))


# ---------------------------------------------------------------- step inputs

class SweepReserve(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: Literal["reserve"]
    run: RunContext
    image: ImageState
    sweep: SweepSpec


class SweepBest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: Literal["best", "settle"]
    run: RunContext
    tuning_job_name: str
    error: StepError | None = None


class SweepStepEvent(RootModel[SweepReserve | SweepBest]):
    root: SweepReserve | SweepBest = Field(discriminator="action")


# ---------------------------------------------------------------- reserve

def tuning_request(run: RunContext, image_uri: str, spec: SweepSpec, settings: Settings,
                   max_runtime_seconds: int) -> dict[str, Any]:
    """CreateHyperParameterTuningJob, verbatim for the ASL: the run's plan as the training job definition."""
    plan = build_plan(run, image_uri, settings)
    static = dict(plan["hyperparameters"])
    for p in spec.params:
        static.pop(p.name, None)  # the tuner sets these
    stopping = copy.deepcopy(plan["stopping_condition"])
    stopping["MaxRuntimeInSeconds"] = max_runtime_seconds
    metric = settings.promotion_metric
    config: dict[str, Any] = {
        "Strategy": STRATEGIES[spec.strategy],
        "HyperParameterTuningJobObjective": {"Type": OBJECTIVE_DIRECTIONS.get(metric, "Maximize"), "MetricName": metric},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": spec.max_jobs, "MaxParallelTrainingJobs": spec.parallel},
        "ParameterRanges": parameter_ranges(spec),
        "TrainingJobEarlyStoppingType": "Off",
    }
    if spec.strategy == "hyperband":
        epochs = int(static.get("epochs") or settings.default_epochs)
        config["StrategyConfig"] = {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": max(epochs, 1)}}
    if not settings.sagemaker_role_arn:
        raise ConfigError("SAGEMAKER_ROLE_ARN is not set: a sweep's training jobs need the training role")
    definition = {
        "AlgorithmSpecification": plan["algorithm_specification"],
        "RoleArn": settings.sagemaker_role_arn,
        "StaticHyperParameters": static,
        "InputDataConfig": plan["input_data_config"],
        "OutputDataConfig": plan["output_data_config"],
        "ResourceConfig": plan["resource_config"],
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": plan["use_spot"],
        # SageMaker keeps each training job's checkpoints under its own name below this prefix.
        "CheckpointConfig": plan["checkpoint_config"],
        "Environment": plan["environment"],
    }
    return {"HyperParameterTuningJobName": tuning_job_name(run.run_id, run.dataset.name, settings.stack_code),
            "HyperParameterTuningJobConfig": config, "TrainingJobDefinition": definition, "Tags": plan["tags"]}


def reserve_sweep(event: SweepReserve, *, settings: Settings, store: Any, ledger: Any, sns: Publisher,
                  prices: Any = None, budgets: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """N x one job's worst case, all or none, before the tuning job exists."""
    run, spec = event.run, event.sweep
    price = budget.price_of(settings, prices, now)
    decisions = []
    for slot in range(1, spec.max_jobs + 1):
        d = budget.admit_attempt(run.run_id, slot, settings, ledger, use_spot=settings.use_spot, price=price,
                                 budgets=budgets, now=now)
        decisions.append(d)
        if not d.admitted or d.clamped:
            break
    first = decisions[0]
    ok = len(decisions) == spec.max_jobs and all(d.admitted and not d.clamped for d in decisions)
    if not ok:
        for d in decisions:  # all or none: what was held is released
            if d.admitted:
                ledger.settle(run.run_id, d.attempt, 0.0, 0.0, now=now)
        full = first.full_worst_case_usd * spec.max_jobs
        reason = (f"{spec.max_jobs} jobs x worst case {format_usd(first.full_worst_case_usd)} = {format_usd(full)} "
                  f"does not fit: {format_usd(first.remaining_usd)} of {format_usd(first.budget_usd)} left this month")
        store.update_run(run.run_id, now=now, status=RunStatus.BUDGET_BLOCKED, note=f"blocked: {reason}",
                         worst_case_cost_usd=full)
        blocked = first.model_copy(update={"admitted": False, "reason": reason, "worst_case_usd": full})
        return {"admitted": False, "budget": blocked.model_dump(mode="json"), "tuning": None,
                "attempt": AttemptState(number=1, job_name="-").model_dump(mode="json")}
    total = round(sum(d.worst_case_usd for d in decisions), 6)
    request = tuning_request(run, event.image.image_uri, spec, settings, first.max_runtime_seconds)
    name = request["HyperParameterTuningJobName"]
    store.update_run(run.run_id, now=now, status=RunStatus.TRAINING, current_job=name, worst_case_cost_usd=total,
                     note=f"sweep admitted: {spec.max_jobs} jobs x {format_usd(first.worst_case_usd)} reserved "
                          f"({format_usd(total)}), {spec.parallel} at a time, tuning job {name}",
                     sweep={"tuning_job_name": name, "max_jobs": spec.max_jobs, "parallel": spec.parallel,
                            "strategy": spec.strategy, "params": [p.model_dump(mode="json") for p in spec.params]})
    ranges = "; ".join(_range_text(p) for p in spec.params)
    text = (f"Sweep started for {run.dataset.name} {run.dataset.version} (run {run.run_id}, tuning job {name}): "
            f"{spec.max_jobs} jobs, {spec.parallel} at a time, {spec.strategy} over {ranges} on "
            f"{first.instance_count} x {first.instance_type} ({'spot' if first.use_spot else 'on-demand'}); "
            f"worst case {spec.max_jobs} x {format_usd(first.worst_case_usd)} = {format_usd(total)} reserved, "
            f"{format_usd(first.remaining_usd)} of {format_usd(first.budget_usd)} left this month before it.")
    publish(Notification(event_type=EventType.STARTED, run_id=run.run_id, dataset=run.dataset.name,
                         version=run.dataset.version, text=text), settings.notifications_topic_arn, sns)
    summary = first.model_copy(update={"worst_case_usd": total})
    return {"admitted": True, "budget": summary.model_dump(mode="json"), "tuning": request,
            "attempt": AttemptState(number=1, job_name=name).model_dump(mode="json")}


def _range_text(p: ParamRange) -> str:
    if p.kind == "categorical":
        return f"{p.name} in {{{', '.join(p.values)}}}"
    return f"{p.name} {p.min}..{p.max}" + (" (log)" if p.scaling == "Logarithmic" else "")


# ---------------------------------------------------------------- best / settle

def _jobs(sagemaker: Any, tuning: str) -> list[dict[str, Any]]:
    rows, token = [], None
    while True:
        kwargs: dict[str, Any] = {"HyperParameterTuningJobName": tuning, "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        page = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(**kwargs)
        rows += page.get("TrainingJobSummaries") or []
        token = page.get("NextToken")
        if not token:
            return sorted(rows, key=lambda r: str(r.get("CreationTime") or ""))


def settle_sweep(run_id: str, tuning: str, *, sagemaker: Any, ledger: Any, now: datetime | None = None
                 ) -> list[dict[str, Any]]:
    """Reservation NNN = training job `<tuning>-NNN-<hash>`: its billable seconds (already settled when the
    job's own end event came: TrainingEvents); slots no job used are released. The leaderboard rows."""
    try:
        jobs = _jobs(sagemaker, tuning)
    except Exception as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")
        if code != "ResourceNotFound":
            raise
        jobs = []  # the tuning job was never created (budget, approval): every slot is released
    board, used = [], set()
    for i, job in enumerate(jobs, start=1):
        slot = (sweep_job_slot(job["TrainingJobName"]) or (tuning, i))[1]
        used.add(slot)
        desc = sagemaker.describe_training_job(TrainingJobName=job["TrainingJobName"])
        billed = budget.billable_seconds(desc)
        if desc.get("TrainingJobStatus") in ("Completed", "Failed", "Stopped"):
            ledger.settle(run_id, slot, billed, budget.training_seconds(desc), now=now)
        metric = (job.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value")
        board.append({"job_name": job["TrainingJobName"], "slot": slot, "status": desc.get("TrainingJobStatus"),
                      "hyperparameters": job.get("TunedHyperParameters") or {}, "objective": metric,
                      "billable_seconds": billed})
    for res in ledger.reservations(run_id):
        if res.state == "reserved" and res.attempt not in used:
            ledger.settle(run_id, res.attempt, 0.0, 0.0, now=now)  # no job used it: released
    costs = {r.attempt: r.actual_usd for r in ledger.reservations(run_id)}
    for row in board:
        row["cost_usd"] = costs.get(row["slot"])
    return board


def leaderboard_text(board: list[dict[str, Any]], metric: str, best: str | None) -> str:
    ranked = sorted(board, key=lambda r: (r["objective"] is None, -(r["objective"] or 0.0)))
    lines = []
    for n, row in enumerate(ranked, start=1):
        hp = ", ".join(f"{k}={v}" for k, v in sorted(row["hyperparameters"].items()))
        value = f"{row['objective']:.4f}" if isinstance(row["objective"], (int, float)) else row["status"]
        cost = format_usd(row["cost_usd"]) if isinstance(row.get("cost_usd"), (int, float)) else "-"
        mark = "  (best)" if row["job_name"] == best else ""
        lines.append(f"{n}. {metric} {value}  {hp}  ({cost}){mark}")
    return "\n".join(lines)


def sweep_best(event: SweepBest, *, settings: Settings, store: Any, ledger: Any, sagemaker: Any, sns: Publisher,
               now: datetime | None = None) -> dict[str, Any]:
    """After the tuning job: settle, leaderboard in the thread, and the best job as the run's training."""
    run, tuning = event.run, event.tuning_job_name
    board = settle_sweep(run.run_id, tuning, sagemaker=sagemaker, ledger=ledger, now=now)
    desc = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning)
    best = (desc.get("BestTrainingJob") or {}).get("TrainingJobName")
    metric = settings.promotion_metric
    text = leaderboard_text(board, metric, best)
    store.update_run(run.run_id, now=now, status=RunStatus.EVALUATING, current_job=best,
                     job_names=[r["job_name"] for r in board], attempts=len(board),
                     note=f"sweep {tuning} {desc.get('HyperParameterTuningJobStatus')}: best {best}",
                     leaderboard=[{k: v for k, v in r.items() if k != "billable_seconds"} for r in board])
    if best is None:
        raise SweepFailed(f"tuning job {tuning} ended {desc.get('HyperParameterTuningJobStatus')} with no best "
                          f"training job ({desc.get('FailureReason') or 'every job failed'}):\n{text}")
    publish(Notification(event_type=EventType.LEADERBOARD, run_id=run.run_id, dataset=run.dataset.name,
                         version=run.dataset.version,
                         text=f"Sweep {tuning} leaderboard ({len(board)} jobs, by {metric}); {best} goes to the "
                              f"verdict:\n{text}"), settings.notifications_topic_arn, sns)
    logger.info("sweep finished", extra={"run_id": run.run_id, "tuning_job": tuning, "best": best,
                                         "jobs": len(board)})
    return {"training": {"job_name": best, "status": "Completed"},
            "attempt": AttemptState(number=1, job_name=best).model_dump(mode="json")}


class SweepFailed(RuntimeError):
    """The tuning job produced no model to judge."""


def sweep_failed(event: SweepBest, *, sagemaker: Any, ledger: Any, store: Any, now: datetime | None = None
                 ) -> dict[str, Any]:
    """The tuning job failed or was never created: settle what ran, release the rest, keep the cause."""
    board = settle_sweep(event.run.run_id, event.tuning_job_name, sagemaker=sagemaker, ledger=ledger, now=now)
    reason = failure_reason(event.error) if event.error else "the sweep failed"
    store.update_run(event.run.run_id, now=now, note=f"sweep failed: {reason}",
                     job_names=[r["job_name"] for r in board] or None)
    return {"settled_jobs": len(board), "reason": reason}


def sweep_step(event: SweepStepEvent, **deps: Any) -> dict[str, Any]:
    step = event.root
    if isinstance(step, SweepReserve):
        return reserve_sweep(step, settings=deps["settings"], store=deps["store"], ledger=deps["ledger"],
                             sns=deps["sns"], prices=deps.get("prices"), budgets=deps.get("budgets"))
    if step.action == "best":
        return sweep_best(step, settings=deps["settings"], store=deps["store"], ledger=deps["ledger"],
                          sagemaker=deps["sagemaker"], sns=deps["sns"])
    return sweep_failed(step, sagemaker=deps["sagemaker"], ledger=deps["ledger"], store=deps["store"])


def parse_spec(data: Any) -> SweepSpec:
    return parse_model(SweepSpec, data, "sweep")
