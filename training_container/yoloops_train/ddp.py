"""Multi-GPU on one host: the /dev/shm budget of Ultralytics' loaders and NCCL, and what every rank inherits.

/dev/shm carries each batch a DataLoader worker hands to its training process. Ultralytics 8.4.190
(data/build.py build_dataloader) keeps `prefetch_factor` batches per worker: 4 for the shuffled train loader,
2 for validation; and the validation loader has twice the workers and twice the batch
(models/yolo/detect/train.py: workers * 2; engine/trainer.py: batch_size * 2). Both loaders are
InfiniteDataLoaders whose workers live (and prefetch) for the whole run, so both hold their batches at once,
in every training process. NCCL's shared-memory transport takes more per pair of GPUs.
"""

from __future__ import annotations

import dataclasses
import os

TRAIN_PREFETCH = 4
VAL_PREFETCH = 2
VAL_WORKERS_X = 2
VAL_BATCH_X = 2
LOADER_SHARE = 0.5  # of /dev/shm for the loaders: the rest is headroom (torch's own shm, pinned copies)
# NCCL shm transport, per ordered pair of ranks: buffers for its protocols (NCCL_BUFFSIZE 4 MiB and the
# LL/LL128 buffers) times a few channels: an estimate, on the safe side.
NCCL_PER_PAIR = 32 * 2**20
NCCL_SHARE = 0.25  # NCCL's transport is turned off (NCCL_SHM_DISABLE=1) when it would take more than this


def batch_bytes(batch: int, imgsz: int) -> int:
    return batch * 3 * imgsz * imgsz  # uint8 CHW images, letterboxed/mosaicked to imgsz


def loader_shm_bytes(workers: int, per_rank_batch: int, imgsz: int) -> int:
    """Bytes one training process's two loaders hold in /dev/shm with `workers` train workers."""
    train = TRAIN_PREFETCH * workers * batch_bytes(per_rank_batch, imgsz)
    val = VAL_PREFETCH * (VAL_WORKERS_X * workers) * batch_bytes(VAL_BATCH_X * per_rank_batch, imgsz)
    return train + val


def nccl_shm_bytes(ranks: int) -> int:
    return ranks * (ranks - 1) * NCCL_PER_PAIR if ranks > 1 else 0


@dataclasses.dataclass(frozen=True)
class ShmPlan:
    workers: int  # train loader workers per process that fit
    nccl_shm_disable: bool
    need_bytes: int  # loaders (all processes) + NCCL at that many workers

    def describe(self, shm_bytes: int) -> str:
        mib = 2**20
        return (f"/dev/shm {shm_bytes / mib:.0f} MiB: {self.workers} loader worker(s) per process "
                f"({self.need_bytes / mib:.0f} MiB with the validation loader and NCCL)"
                + ("; NCCL shared-memory transport off (NCCL_SHM_DISABLE=1)" if self.nccl_shm_disable else ""))


def plan_shm(shm_bytes: int, workers: int, per_rank_batch: int, ranks: int, imgsz: int) -> ShmPlan:
    """The most workers (<= `workers`) whose batches fit in /dev/shm next to NCCL's; 0 = load in-process."""
    if not shm_bytes:  # unknown size: leave the choice alone
        return ShmPlan(workers, False, 0)
    nccl = nccl_shm_bytes(ranks)
    disable = nccl > shm_bytes * NCCL_SHARE
    nccl_used = 0 if disable else nccl
    budget = shm_bytes * LOADER_SHARE - nccl_used
    per_worker = loader_shm_bytes(1, per_rank_batch, imgsz) * ranks
    fit = int(budget // per_worker) if per_worker and budget > 0 else 0
    w = max(0, min(workers, fit))
    return ShmPlan(w, disable, loader_shm_bytes(w, per_rank_batch, imgsz) * ranks + nccl_used)


def rank_env(config_dir: str, nccl_shm_disable: bool, env: dict[str, str] | None = None) -> dict[str, str]:
    """What the job puts in its environment before Ultralytics starts the ranks (they inherit it): offline,
    the settings dir that holds the fonts, and NCCL without shared memory when it does not fit."""
    env = os.environ if env is None else env
    out = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false",
           "YOLO_CONFIG_DIR": env.get("YOLO_CONFIG_DIR") or config_dir}
    if nccl_shm_disable and "NCCL_SHM_DISABLE" not in env:  # an explicit setting wins
        out["NCCL_SHM_DISABLE"] = "1"
    return out
