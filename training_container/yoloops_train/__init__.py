"""The yoloops SageMaker trainer: an Ultralytics YOLO detector trained under the SageMaker container contract.

Contract (see training_container/README.md):
  <base> = $SAGEMAKER_BASE_DIR or /opt/ml
  in : <base>/input/config/hyperparameters.json (all strings), channel `train` ($SM_CHANNEL_TRAIN or
       $DATASET_ROOT; a dataset dir or a single .zip), optional channel `weights` ($SM_CHANNEL_WEIGHTS or
       $BASE_WEIGHTS), <base>/checkpoints (spot checkpoints, synced to S3 by SageMaker)
  out: <base>/model/{best.pt,metrics.json,results.csv,args.yaml,...} on success;
       <base>/output/failure (one line) and a non-zero exit on failure;
       stdout lines `yoloops-metric epoch=.. mAP50=..` matched by the job's MetricDefinitions.

Standalone on purpose: the image ships Ultralytics, not yoloops_core. Ultralytics is imported only after the
environment is made offline (YOLO_OFFLINE and the settings dir must be set before its first import), so no
module here imports it at module level.

Modules: common (errors, logs, metric line), config (paths, hyperparameters), dataset, throughput (machine and
speed settings), offline (Ultralytics patches), tracking (W&B), resume (checkpoints, signals), trainer (the
Ultralytics trainer subclass), outputs (/opt/ml/model), job (main), safetree (the images+labels tree Ultralytics
reads), seals (only checkpoints this job wrote are loaded), paired (challenger vs champion on the same images).
"""

from .common import JobFailure, Terminated, format_metric_line
from .config import Paths, TrainConfig, load_config, parse_hyperparameters, resolve_model
from .dataset import PreparedDataset, prepare_dataset
from .job import main, train
from .resume import DONE_MARKER, EPOCH_LOG, checkpoint_state
from .throughput import Machine, detect_machine, resolve_throughput
from .tracking import WandbRun

__all__ = [
    "DONE_MARKER", "EPOCH_LOG", "JobFailure", "Machine", "Paths", "PreparedDataset", "Terminated", "TrainConfig",
    "WandbRun", "checkpoint_state", "detect_machine", "format_metric_line", "load_config", "main",
    "parse_hyperparameters", "prepare_dataset", "resolve_model", "resolve_throughput", "train",
]
