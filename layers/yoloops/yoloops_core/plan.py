"""The training plan: CreateTrainingJob fields, verbatim, that the ASL's Train state passes through."""

from __future__ import annotations

from typing import Any

from yoloops_core.config import Settings
from yoloops_core.metrics import METRIC_DEFINITIONS
from yoloops_core.models import AttemptState, RunContext, job_name
from yoloops_core.pairing import champion_channel
from yoloops_core.snapshot import channels as snapshot_channels
from yoloops_core.weights import channel, file_name

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"


def hyperparameters(run: RunContext, settings: Settings) -> dict[str, str]:
    """Stack defaults (model, epochs, then DEFAULT_HYPERPARAMETERS), overridden by the run's own.

    With base weights, `model` is their file name in the `weights` channel (the container loads
    /opt/ml/input/data/weights/<model>), whatever model YAML was configured. SageMaker wants strings.
    """
    merged = {"model": settings.default_model, "epochs": str(settings.default_epochs),
              **settings.default_hyperparameters}
    merged.update({k: str(v) for k, v in run.hyperparameters.items()})
    if "val_fraction" in merged or settings.val_fraction != Settings.model_fields["val_fraction"].default:
        # The job splits a dataset without val exactly as the validation report said (container default 0.15).
        merged["val_fraction"] = str(settings.val_fraction)
    if run.base_weights:
        merged["model"] = file_name(run.base_weights)
    # What the bundle's model.json names, and which champion the job scores beside the challenger.
    merged["dataset_version"] = run.dataset.version
    merged["base_weights"] = run.base_weights or ""
    if champion_channel("", run.champion) is not None:
        merged["champion_run_id"] = run.champion.run_id  # type: ignore[union-attr]
    return merged


def input_channels(run: RunContext, bucket: str) -> list[dict[str, Any]]:
    """`train` = the dataset version; `weights` = the single .pt the run starts from, when it has one;
    `champion` = the champion's best.pt, scored beside the challenger on the same images."""
    if run.snapshot is not None:  # exactly the validated objects, and the listing the job checks them against
        channels = snapshot_channels(bucket, run.snapshot)
    else:  # a run validated before snapshots existed
        channels = [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{run.dataset.key}",
            "S3DataDistributionType": "FullyReplicated"}}}]
    if run.base_weights:
        channels.append(channel(bucket, run.base_weights))
    champion = champion_channel(bucket, run.champion)
    if champion is not None:
        channels.append(champion)
    return channels


def build_plan(run: RunContext, image_uri: str, settings: Settings) -> dict[str, Any]:
    bucket = settings.artifacts_bucket
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
    if settings.use_spot:
        # SageMaker requires MaxWait > MaxRuntime for managed spot (time waiting for capacity counts).
        stopping["MaxWaitTimeInSeconds"] = max(settings.effective_max_wait_seconds,
                                               settings.max_runtime_seconds + 1)
    environment: dict[str, str] = {}
    if settings.wandb_secret_arn:
        # The ARN only: the container reads the key at start; DescribeTrainingJob shows Environment.
        environment["WANDB_SECRET_ARN"] = settings.wandb_secret_arn
    return {
        "algorithm_specification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
        },
        "hyperparameters": hyperparameters(run, settings),
        "input_data_config": input_channels(run, bucket),
        "output_data_config": {"S3OutputPath": f"s3://{bucket}/runs/{run.run_id}/output/"},
        "resource_config": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
            "VolumeSizeInGB": settings.volume_size_gb,
        },
        "stopping_condition": stopping,
        "use_spot": settings.use_spot,
        # One prefix for every attempt of the run: a retry resumes from the last checkpoint.
        "checkpoint_config": {"S3Uri": f"s3://{bucket}/checkpoints/{run.run_id}/",
                              "LocalPath": CHECKPOINT_LOCAL_PATH},
        "environment": environment,
        # yoloops:stack: the stack's cost-allocation tag (its AWS Budget counts this job) and whose job it is.
        "tags": [{"Key": "yoloops:run-id", "Value": run.run_id},
                 {"Key": "yoloops:dataset", "Value": run.dataset.name},
                 *([{"Key": "yoloops:stack", "Value": settings.stack_name}] if settings.stack_name else [])],
    }


def first_attempt(run_id: str, stack_code: str = "") -> AttemptState:
    return AttemptState(number=1, job_name=job_name(run_id, 1, stack_code))
