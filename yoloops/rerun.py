"""CLI side of retrain and retry: find what to run again, check it here, start it as the workflow's input.

Both start the training workflow with one StartExecution whose input is a RunRequest (trigger source
`retrain`/`retry`, `overrides`), exactly what `aws stepfunctions start-execution` can send
(docs/architecture.md "Retrain and retry"); the workflow checks the overrides again at ValidateDataset.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

from pydantic import ValidationError
from yoloops_core.hyperparameters import check_overrides, parse_assignments
from yoloops_core.models import (
    InvalidInput,
    RunRequest,
    RunStatus,
    Trigger,
    describe_validation_error,
    parse_model,
)
from yoloops_core.rerun import rerun_ids
from yoloops_core.runs import StartResult, start_run

from yoloops.bundle import check_weights
from yoloops.client import CliError, NotFound, Stack


def _overrides(assignments: list[str]) -> dict[str, Any]:
    """`--set k=v ...` read and checked now (the workflow checks them again), so a typo costs no run."""
    try:
        values = parse_assignments(assignments)
        check_overrides(values)
    except InvalidInput as exc:
        raise CliError(str(exc)) from None
    return values


def _start(stack: Stack, request: RunRequest, original: str, kind: str) -> StartResult:
    """Start under the first free `<root>-t<n>` / `-y<n>`: execution names are unique, so a taken one
    (same name, any input) answers started=False and the next number is tried."""
    sfn = stack.client("stepfunctions")
    for run_id in rerun_ids(original, kind):
        if stack.describe_execution(run_id) is not None:
            continue
        result = start_run(request, run_id, stack.state_machine_arn, sfn)
        if result.started:
            return result
    raise CliError(f"{original} has been {kind}ed {len(rerun_ids(original, kind))} times already; "
                   "push a new dataset version instead")


def _detail(extra: dict[str, Any]) -> dict[str, Any]:
    return {"user": getpass.getuser(), **{k: v for k, v in extra.items() if v is not None}}


def _request(**fields: Any) -> RunRequest:
    try:
        return RunRequest(**fields)
    except ValidationError as exc:
        raise CliError(describe_validation_error(exc, "run request")) from None


def split_dataset(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition("@")
    return name, (version or None)


def retrain(stack: Stack, spec: str, assignments: list[str], weights: str | None = None,
            instance_type: str | None = None) -> dict[str, Any]:
    """`yoloops train DATASET[@VERSION]`: a complete, validated version trained again with overrides."""
    from yoloops_core.s3_trigger import latest_complete_version

    name, version = split_dataset(spec)
    overrides = _overrides(assignments)
    dataset = latest_complete_version(stack.runs_table, ddb=stack.client("dynamodb"), name=name, version=version)
    if dataset is None:
        what = f"version {version!r} of dataset {name!r}" if version else f"dataset {name!r}"
        raise NotFound(f"{what} has no complete upload: push it first (`yoloops dataset push DIR --name {name}`)")
    original = stack.dataset_run_id(dataset)
    record = stack.store.get_run(original)
    if record is None:
        raise CliError(f"{dataset.name}@{dataset.version} has no run {original} (its upload never started one), "
                       "so it was never validated; push it again")
    if record.get("status") == RunStatus.REJECTED:
        raise CliError(f"{dataset.name}@{dataset.version} was rejected by validation (run {original}): "
                       "fix the dataset and push a new version")
    if weights:
        check_weights(stack, weights, dataset.name)
    request = _request(dataset=dataset, overrides=overrides, weights=weights or None, instance_type=instance_type,
                       trigger=Trigger(source="retrain", ref=original,
                                       detail=_detail({"dataset": f"{dataset.name}@{dataset.version}"})))
    result = _start(stack, request, original, "retrain")
    return {"run_id": result.run_id, "of_run": original, "dataset": dataset.name, "version": dataset.version,
            "overrides": overrides, "weights": weights, "instance_type": request.instance_type,
            "execution_arn": result.execution_arn,
            "input": request.model_dump(mode="json")}


def retry(stack: Stack, run_id: str, assignments: list[str], instance_type: str | None = None) -> dict[str, Any]:
    """`yoloops run retry RUN`: a finished run started again with its own execution input (+ overrides)."""
    record = stack.get_run(run_id)
    status = record.get("status")
    if status in {s.value for s in RunStatus if s.in_flight}:
        raise CliError(f"run {run_id} is {status}: only a finished run can be retried")
    desc = stack.describe_execution(run_id)
    if desc is None:
        raise NotFound(f"run {run_id} has no workflow execution to take its inputs from")
    try:
        original = parse_model(RunRequest, json.loads(desc.get("input") or "{}"), f"execution input of {run_id}")
    except (InvalidInput, ValueError) as exc:
        raise CliError(f"cannot retry {run_id}: {exc}") from None
    overrides = {**original.overrides, **_overrides(assignments)}
    request = _request(**{
        **original.model_dump(), "overrides": overrides,
        "instance_type": instance_type or original.instance_type,
        "trigger": Trigger(source="retry", ref=run_id,
                           detail=_detail({"was": f"{original.trigger.source}: {original.trigger.ref}"[:500]})),
    })
    result = _start(stack, request, run_id, "retry")
    return {"run_id": result.run_id, "of_run": run_id, "dataset": original.dataset.name,
            "version": original.dataset.version, "overrides": overrides, "instance_type": request.instance_type,
            "execution_arn": result.execution_arn,
            "input": request.model_dump(mode="json")}
