"""The machine, and every speed decision made from it (device, batch, workers, cache, amp)."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from .config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Machine:
    cpus: int
    gpu_count: int
    gpu_mem_gb: float  # per GPU; 0 without a GPU
    bf16: bool
    available_ram_bytes: int


def detect_machine() -> Machine:
    import torch

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        cpus = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mem = torch.cuda.get_device_properties(0).total_memory / 2**30 if gpus else 0.0
    bf16 = bool(gpus and torch.cuda.is_bf16_supported())
    try:
        import psutil

        avail = psutil.virtual_memory().available
    except ImportError:  # pragma: no cover
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return Machine(cpus, gpus, mem, bf16, avail)


# Images per batch that fit comfortably at 640 px on an 80 GB GPU, per model scale (bf16/AMP training).
# Scaled linearly by memory and by pixel count; measured on H200: n=128 / s=64 reached the eager-step limit.
_BATCH_AT_640_80GB = {"n": 128, "s": 64, "m": 40, "l": 24, "x": 16}


def _model_scale(model: str) -> str:
    stem = Path(model).stem.lower()
    for s in "nsmlx":
        if stem.endswith(s) or f"{s}-" in stem[-4:]:
            return s
    return "s"


def resolve_throughput(cfg: TrainConfig, machine: Machine, n_train: int, train_bytes: int) -> dict[str, Any]:
    """Every speed decision in one place: device, batch, workers, cache, amp (explicit hyperparameters win).

    Measured (issue 4): Ultralytics defaults (batch 16, 8 workers, no cache, AMP-check) keep an H200 20-30%
    busy; batch sized to memory + all CPUs as workers + RAM cache + bf16 gives ~4x the images/s.
    """
    gpu = machine.gpu_count > 0 and cfg.device != "cpu"
    device = cfg.device if cfg.device != "auto" else ("0" if gpu else "cpu")
    if cfg.batch:
        batch = cfg.batch
    elif gpu:
        per = _BATCH_AT_640_80GB[_model_scale(cfg.model)] * machine.gpu_mem_gb / 80 * (640 / cfg.imgsz) ** 2
        batch = 2 ** int(math.log2(max(8, min(per, 512))))
        # keep >= ~8 optimizer steps per epoch on small datasets
        batch = max(8, min(batch, 2 ** int(math.log2(max(8, n_train // 8)))))
    else:
        batch = max(2, min(16, 2 ** int(math.log2(max(2, n_train // 4)))))
    if cfg.workers >= 0:
        workers = cfg.workers
    elif gpu:
        workers = max(1, min(32, machine.cpus - 1))  # one core left for the training loop itself
    else:
        workers = 0  # Ultralytics forces 0 on CPU anyway: the model, not loading, is the bottleneck
    if cfg.cache != "auto":
        cache: Any = False if cfg.cache == "none" else cfg.cache
    else:
        # decoded, resized uint8 images ~ imgsz^2 * 3 each (JPEG bytes are far smaller), need 2x headroom
        decoded = n_train * cfg.imgsz * cfg.imgsz * 3
        cache = "ram" if decoded * 2 < machine.available_ram_bytes else False
    if cfg.amp != "auto":
        amp: Any = {"bf16": "bf16", "fp16": True, "fp32": False}[cfg.amp]
    elif gpu:
        amp = "bf16" if machine.bf16 else True
    else:
        amp = False
    # deterministic algorithms cost GPU speed; on CPU they are free and make tests reproducible
    return {"device": device, "batch": int(batch), "workers": int(workers), "cache": cache, "amp": amp,
            "deterministic": not gpu}
