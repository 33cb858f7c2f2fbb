"""CLI side of `yoloops sweep`: check the ranges here, find the validated version, start the sweep workflow.

One StartExecution on the stack's SweepStateMachine with input `{request: RunRequest, sweep: SweepSpec}`
(docs/architecture.md "Sweeps"), so `aws stepfunctions start-execution` can start the same sweep.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import time
from typing import Any

from pydantic import ValidationError
from yoloops_core.models import InvalidInput, RunRequest, RunStatus, Trigger, describe_validation_error
from yoloops_core.sweep import SweepSpec, parse_param

from yoloops.client import CliError, NotFound, Stack
from yoloops.rerun import _overrides, split_dataset


def sweep_spec(params: list[str], max_jobs: int, parallel: int, strategy: str) -> SweepSpec:
    try:
        return SweepSpec(params=[parse_param(p) for p in params], max_jobs=max_jobs, parallel=parallel,
                         strategy=strategy)  # type: ignore[arg-type]
    except InvalidInput as exc:
        raise CliError(str(exc)) from None
    except ValidationError as exc:
        raise CliError(describe_validation_error(exc, "sweep")) from None


def sweep_run_id(dataset: str, version: str, now: float | None = None) -> str:
    """`sw-<dataset>-<version>-<hash>`: a new id per sweep, within the run-id budget (50)."""
    digest = hashlib.sha256(f"{dataset}@{version}@{now or time.time()}".encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9]+", "-", f"{dataset}-{version}").strip("-")[:36].strip("-")
    return f"sw-{readable}-{digest}"


def start_sweep(stack: Stack, spec: str, params: list[str], *, max_jobs: int, parallel: int, strategy: str,
                assignments: list[str] | None = None) -> dict[str, Any]:
    from yoloops_core.s3_trigger import latest_complete_version

    arn = stack.info.outputs.get("SweepStateMachineArn")
    if not arn:
        raise CliError(f"stack {stack.info.label} has no SweepStateMachineArn output: deploy this version first")
    sweep = sweep_spec(params, max_jobs, parallel, strategy)
    overrides = _overrides(assignments or [])
    clash = sorted(set(overrides) & {p.name for p in sweep.params})
    if clash:
        raise CliError(f"{clash} is both --set and --param: a swept hyperparameter cannot also be fixed")
    name, version = split_dataset(spec)
    dataset = latest_complete_version(stack.runs_table, ddb=stack.client("dynamodb"), name=name, version=version)
    if dataset is None:
        what = f"version {version!r} of dataset {name!r}" if version else f"dataset {name!r}"
        raise NotFound(f"{what} has no complete upload: push it first (`yoloops dataset push DIR --name {name}`)")
    record = stack.store.get_run(stack.dataset_run_id(dataset))
    if record is not None and record.get("status") == RunStatus.REJECTED:
        raise CliError(f"{dataset.name}@{dataset.version} was rejected by validation: push a fixed version")
    request = RunRequest(dataset=dataset, overrides=overrides,
                         trigger=Trigger(source="cli", ref=f"sweep {dataset.name}@{dataset.version}",
                                         detail={"user": getpass.getuser(), "sweep": True}))
    run_id = sweep_run_id(dataset.name, dataset.version)
    body = {"request": request.model_dump(mode="json"), "sweep": sweep.model_dump(mode="json")}
    resp = stack.client("stepfunctions").start_execution(stateMachineArn=arn, name=run_id, input=json.dumps(body))
    return {"run_id": run_id, "execution_arn": resp["executionArn"], "dataset": dataset.name,
            "version": dataset.version, "max_jobs": max_jobs, "parallel": parallel, "strategy": strategy,
            "input": body}
