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
    shm_bytes: int = 0  # size of /dev/shm (DataLoader workers hand batches over through it); 0 = unknown
    total_ram_bytes: int = 0
    gpu_names: tuple[str, ...] = ()

    def describe(self) -> str:
        gib = 2**30
        gpus = f"{self.gpu_count} x {self.gpu_names[0] if self.gpu_names else 'GPU'} ({self.gpu_mem_gb:.0f} GiB)" \
            if self.gpu_count else "no GPU"
        return (f"{gpus}, {self.cpus} vCPUs, RAM {self.total_ram_bytes / gib:.1f} GiB "
                f"({self.available_ram_bytes / gib:.1f} available), /dev/shm {self.shm_bytes / gib:.2f} GiB, "
                f"bf16 {'yes' if self.bf16 else 'no'}")


def _shm_bytes(path: str = "/dev/shm") -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_blocks * st.f_frsize


def detect_machine() -> Machine:
    import torch

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        cpus = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mem = min(torch.cuda.get_device_properties(i).total_memory for i in range(gpus)) / 2**30 if gpus else 0.0
    names = tuple(torch.cuda.get_device_name(i) for i in range(gpus))
    bf16 = bool(gpus and torch.cuda.is_bf16_supported())
    try:
        import psutil

        vm = psutil.virtual_memory()
        avail, total = vm.available, vm.total
    except ImportError:  # pragma: no cover
        page = os.sysconf("SC_PAGE_SIZE")
        avail, total = os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page
    return Machine(cpus, gpus, mem, bf16, avail, _shm_bytes(), total, names)


# Images per batch that fit comfortably at 640 px on an 80 GB GPU, per model scale (bf16/AMP training).
# Scaled linearly by memory and by pixel count; measured on H200: n=128 / s=64 reached the eager-step limit.
_BATCH_AT_640_80GB = {"n": 128, "s": 64, "m": 40, "l": 24, "x": 16}


def _model_scale(model: str) -> str:
    stem = Path(model).stem.lower()
    for s in "nsmlx":
        if stem.endswith(s) or f"{s}-" in stem[-4:]:
            return s
    return "s"


def gpu_devices(cfg: TrainConfig, machine: Machine) -> list[str]:
    """The CUDA devices the job trains on: all of the machine's unless `device` names some (or cpu)."""
    if cfg.device == "cpu" or machine.gpu_count == 0:
        return []
    if cfg.device != "auto":
        return [d.strip() for d in cfg.device.split(",") if d.strip()]
    return [str(i) for i in range(machine.gpu_count)]


def _workers_for_shm(workers: int, machine: Machine, per_rank_batch: int, ranks: int, imgsz: int) -> int:
    """Workers whose batches fit in /dev/shm (ddp.plan_shm: both loaders' real prefetch, plus NCCL)."""
    from .ddp import plan_shm

    return plan_shm(machine.shm_bytes, workers, per_rank_batch, ranks, imgsz).workers


def resolve_throughput(cfg: TrainConfig, machine: Machine, n_train: int, train_bytes: int) -> dict[str, Any]:
    """Every speed decision in one place: device, batch, workers, cache, amp (explicit hyperparameters win).

    Measured (issue 4): Ultralytics defaults (batch 16, 8 workers, no cache, AMP-check) keep an H200 20-30%
    busy; batch sized to memory + all CPUs as workers + RAM cache + bf16 gives ~4x the images/s.

    With N > 1 GPUs Ultralytics trains with DDP (one process per GPU, `device="0,1,.."`): `batch` is the total,
    split evenly, so it is a multiple of N, and never AutoBatch (-1 is refused by Ultralytics under DDP);
    `workers` is per process (Ultralytics' meaning), the CPUs split between the N processes; each process
    caches its own copy of the images, so RAM cache only when N copies fit.
    """
    devices = gpu_devices(cfg, machine)
    ranks = max(1, len(devices))
    gpu = bool(devices)
    device = ",".join(devices) if gpu else "cpu"
    if cfg.batch:
        batch = max(ranks, cfg.batch // ranks * ranks)  # rounded down: never more per GPU than asked for
    elif gpu:
        per = _BATCH_AT_640_80GB[_model_scale(cfg.model)] * machine.gpu_mem_gb / 80 * (640 / cfg.imgsz) ** 2
        per_gpu = 2 ** int(math.log2(max(8, min(per, 512))))
        # keep >= ~8 optimizer steps per epoch on small datasets
        total = max(8, min(per_gpu * ranks, 2 ** int(math.log2(max(8, n_train // 8)))))
        batch = max(ranks, total // ranks * ranks)
    else:
        batch = max(2, min(16, 2 ** int(math.log2(max(2, n_train // 4)))))
    if cfg.workers >= 0:
        workers = cfg.workers
    elif gpu:
        # one core per training process left for the loop itself, the rest split between the processes
        workers = max(1, min(32, (machine.cpus - ranks) // ranks))
        workers = _workers_for_shm(workers, machine, batch // ranks, ranks, cfg.imgsz)
    else:
        workers = 0  # Ultralytics forces 0 on CPU anyway: the model, not loading, is the bottleneck
    if cfg.cache != "auto":
        cache: Any = False if cfg.cache == "none" else cfg.cache
    else:
        # decoded, resized uint8 images ~ imgsz^2 * 3 each (JPEG bytes are far smaller), one copy per training
        # process, with 2x headroom
        decoded = n_train * cfg.imgsz * cfg.imgsz * 3
        cache = "ram" if decoded * ranks * 2 < machine.available_ram_bytes else False
    if cfg.amp != "auto":
        amp: Any = {"bf16": "bf16", "fp16": True, "fp32": False}[cfg.amp]
    elif gpu:
        amp = "bf16" if machine.bf16 else True
    else:
        amp = False
    # deterministic algorithms cost GPU speed; on CPU they are free and make tests reproducible
    return {"device": device, "batch": int(batch), "workers": int(workers), "cache": cache, "amp": amp,
            "deterministic": not gpu}


def world_size(speed: dict[str, Any]) -> int:
    """Training processes Ultralytics starts for these settings (1 = no DDP)."""
    return 1 if speed["device"] == "cpu" else len(str(speed["device"]).split(","))


# ----------------------------------------------------------------------------------- DataLoader crashes
_LOADER_CRASH = ("dataloader worker", "bus error", "shared memory", "shm", "unexpected bus error")


def is_loader_crash(error: BaseException | str) -> bool:
    """A DataLoader worker killed (typically SIGBUS from a full /dev/shm) rather than a bug in training."""
    text = str(error).lower()
    return ("dataloader" in text and any(k in text for k in _LOADER_CRASH[1:])) or "bus error" in text


def fallback_workers(workers: int) -> list[int]:
    """The workers to retry with after a loader crash: half, then none (0 = no shared memory at all)."""
    steps = []
    if workers > 1:
        steps.append(workers // 2)
    if workers > 0:
        steps.append(0)
    return steps


# ------------------------------------------------------------------------------------------ GPU busy %
class GpuSampler:
    """Mean GPU utilisation (NVML, over the training GPUs) between two marks; None without NVML or a GPU.

    nvidia-ml-py is in the image; where it is missing (CPU dev machines) the metric is simply left out.
    """

    def __init__(self, devices: list[str], period_s: float = 0.5):
        import threading

        self.samples: list[tuple[float, float]] = []
        self._handles = self._open(devices)
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="yoloops-gpu-sampler")
        if self._handles:
            self._thread.start()

    @staticmethod
    def _open(devices: list[str]) -> list:
        if not devices:
            return []
        try:
            import pynvml

            pynvml.nvmlInit()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            ids = [visible.split(",")[int(d)] if visible else d for d in devices]
            return [pynvml.nvmlDeviceGetHandleByIndex(int(i)) for i in ids]
        except Exception:  # no NVML library, no driver, odd CUDA_VISIBLE_DEVICES: no metric, never a failure
            return []

    def _read(self) -> float:
        import pynvml

        return sum(float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in self._handles) / len(self._handles)

    def _loop(self) -> None:
        import time

        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self._read()))
            except Exception:
                return
            self._stop.wait(self._period)

    def mean_since(self, t0: float) -> float | None:
        vals = [u for ts, u in self.samples if ts >= t0]
        return round(sum(vals) / len(vals), 1) if vals else None

    def stop(self) -> None:
        self._stop.set()
