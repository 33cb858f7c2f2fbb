"""What every module of the trainer shares: the failure types, logging and the metric line format."""

from __future__ import annotations

import os
import sys
import time

PROCESS_START = time.time()
START_ENV = "YOLOOPS_PROCESS_START"  # set by the job, so DDP ranks measure from the job's start too


def process_start() -> float:
    try:
        return float(os.environ[START_ENV])
    except (KeyError, ValueError):
        return PROCESS_START

# --- metric lines: a copy of yoloops_core.metrics.format_metric_line (the image doesn't ship yoloops_core;
# tests/container asserts METRIC_DEFINITIONS' regexes match what this prints).
METRIC_PREFIX = "yoloops-metric"
METRIC_NAMES = ("epoch", "mAP50", "mAP50-95", "precision", "recall", "box_loss", "images_per_s", "gpu_util")


def format_metric_line(values: dict[str, float | int]) -> str:
    parts = [f"{n}={values[n]:.6g}" if isinstance(values[n], float) else f"{n}={values[n]}"
             for n in METRIC_NAMES if n in values]
    return " ".join([METRIC_PREFIX, *parts])


def emit(line: str) -> None:
    print(line, flush=True)


def log(msg: str) -> None:
    print(f"[yoloops] {msg}", file=sys.stderr, flush=True)


class JobFailure(Exception):
    """A failure with a reason a user can act on; becomes the one line in <base>/output/failure."""


class Terminated(Exception):
    """SIGTERM (spot reclaim / StopTrainingJob) arrived."""
