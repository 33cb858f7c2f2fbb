"""The Ultralytics trainer as the job runs it: atomic checkpoints, one metric line per epoch, W&B mirror.

A module-level class with module-level hooks on purpose: with several GPUs Ultralytics pickles the trainer's
class, arguments and callbacks (cloudpickle) into a temp file and starts one process per GPU that rebuilds
the trainer from it. The job's own settings reach those processes through the YOLOOPS_JOB environment
variable (inherited), not through closures. Only rank 0 (or the single process, RANK -1) writes anything:
Ultralytics calls save_model on rank 0 only, and every hook below that writes checks `_is_main()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import RANK

from .common import emit, log, process_start
from .dataset import PreparedDataset, save_label_caches
from .offline import patch_ultralytics
from .outputs import metric_float, metric_values
from .resume import SIGNALS, add_record, atomic_write, emit_pending
from .seals import seal
from .storage import commit_copy
from .throughput import GpuSampler
from .tracking import WandbRun

JOB_ENV = "YOLOOPS_JOB"
COMMITTED_SUFFIX = ".committed.pt"  # copies kept while final_eval rewrites last.pt/best.pt in place


def job_context(ds: PreparedDataset, cache_store: Path, devices: list[str], project: str,
                config: dict[str, Any], checkpoints: Path | None = None) -> str:
    """What every training process needs to know about the job, as the JSON put in YOLOOPS_JOB."""
    return json.dumps({
        "checkpoints": str(checkpoints or cache_store.parent),
        "dataset": {"yaml_path": str(ds.yaml_path), "root": str(ds.root), "names": list(ds.names),
                    "n_train": ds.n_train, "n_val": ds.n_val, "bytes_train": ds.bytes_train,
                    "label_dirs": [str(d) for d in ds.label_dirs]},
        "cache_store": str(cache_store), "devices": devices, "wandb_project": project, "config": config,
    })


def _is_main() -> bool:
    return RANK in {-1, 0}


def _env_rank() -> int:
    try:
        return int(os.environ.get("RANK", "-1"))
    except ValueError:
        return -1


class YoloopsTrainer(DetectionTrainer):
    """Checkpoints at <ckpt>/last.pt, committed atomically together with the epoch's record, never torn by SIGTERM.

    Ultralytics' save_dir is a scratch folder (storage.run_dir) it may delete; the checkpoint folder (YOLOOPS_JOB
    "checkpoints", the SageMaker mount) only ever receives committed files, by copy and rename.
    """

    def __init__(self, *a, **kw):
        if _env_rank() != -1:
            # A DDP rank, a fresh process: offline before BaseTrainer.__init__, whose dataset check runs check_font
            patch_ultralytics(Path(os.environ.get("YOLO_CONFIG_DIR") or "/opt/ultralytics"))
        super().__init__(*a, **kw)
        self.job = json.loads(os.environ.get(JOB_ENV) or "{}")
        with contextlib.suppress(OSError):
            self.wdir.rmdir()
        self.ckpt_dir = Path(self.job.get("checkpoints") or self.save_dir)
        self.wdir = self.ckpt_dir
        self.last, self.best = self.wdir / "last.pt", self.wdir / "best.pt"
        self._epoch_t0 = self._train_s = 0.0
        self._gpu_t0, self._gpu_util = 0.0, None
        self._first_step: float | None = None
        self._sampler: GpuSampler | None = None
        self._wandb: WandbRun | None = None
        for event, fn in _HOOKS.items():
            if fn not in self.callbacks.get(event, []):  # DDP ranks receive the launcher's callbacks already
                self.add_callback(event, fn)
        if RANK != -1:  # a DDP rank: SIGTERM forwarded here
            SIGNALS.install()

    # ------------------------------------------------------------------ rank-0 side effects
    def wandb(self) -> WandbRun:
        if self._wandb is None:
            self._wandb = WandbRun(self.ckpt_dir, self.job.get("wandb_project", "yoloops"), self.job.get("config", {}))
        return self._wandb

    def _epoch_record(self) -> dict[str, Any]:
        values: dict[str, Any] = {"epoch": self.epoch + 1, **metric_values(self.metrics or {})}
        losses = self.label_loss_items(self.tloss) if self.tloss is not None else {}
        values["box_loss"] = metric_float(losses, "train/box_loss")
        values["images_per_s"] = round(len(self.train_loader.dataset) / max(self._train_s, 1e-9), 2)
        if self._gpu_util is not None:
            values["gpu_util"] = self._gpu_util
        return values

    def save_model(self):
        SIGNALS.critical += 1
        last, best = self.last, self.best
        self.last, self.best = last.with_suffix(".pt.partial"), best.with_suffix(".pt.partial")
        try:
            for stale in (self.last, self.best):  # left by a kill mid-save: never rename those over a checkpoint
                stale.unlink(missing_ok=True)
            ok = super().save_model()
            extra = {"time_to_first_step_s": self._first_step} if self._first_step is not None else {}
            if self.ckpt_dir != self.save_dir:  # Ultralytics' files live in scratch: commit copies with last.pt
                for name in ("results.csv", "args.yaml"):
                    if (self.save_dir / name).exists():
                        commit_copy(self.save_dir / name, self.ckpt_dir / name)
            add_record(self.ckpt_dir, self._epoch_record(), **extra)  # ahead of last.pt until the rename below
            # a restart loads only checkpoints whose sha256 this job recorded (seals.py)
            seal(self.ckpt_dir, {f.name: tmp for tmp, f in ((self.best, best), (self.last, last)) if tmp.exists()})
            for tmp, final in ((self.best, best), (self.last, last)):
                if tmp.exists():
                    os.replace(tmp, final)  # a kill -9 mid-write leaves the previous last.pt intact
            emit_pending(self.ckpt_dir, self.epoch + 1, self.wandb())
        finally:
            self.last, self.best = last, best
            SIGNALS.critical -= 1
        SIGNALS.check()
        return ok

    def final_eval(self):
        # final_eval strips the optimizer by rewriting last.pt and best.pt in place: keep committed copies
        # until the job is done, so a kill in the middle cannot leave only a torn checkpoint.
        if _is_main():
            for f in (self.last, self.best):
                if f.exists():
                    tmp = f.with_name(f.name + ".copy")
                    shutil.copy2(f, tmp)
                    os.replace(tmp, f.with_suffix(COMMITTED_SUFFIX))
        result = super().final_eval()
        if _is_main():  # the stripped files are this job's too
            seal(self.ckpt_dir, {f.name: f for f in (self.last, self.best) if f.exists()})
        return result

    def train(self):
        try:
            return super().train()
        except BaseException as e:
            if RANK != -1:  # a DDP rank: the launching process only sees an exit code; leave it the reason
                with contextlib.suppress(OSError):
                    atomic_write(self.save_dir / f"yoloops-rank{RANK}-error.txt", f"{type(e).__name__}: {e}")
            raise
        finally:
            if self._sampler is not None:
                self._sampler.stop()
            if self._wandb is not None:
                self._wandb.finish()
                self._wandb = None


# ---------------------------------------------------------------------------------------------- hooks
def _on_train_start(t: YoloopsTrainer) -> None:
    if _is_main():
        ds = t.job.get("dataset")
        if ds:
            save_label_caches(PreparedDataset(Path(ds["yaml_path"]), Path(ds["root"]), ds["names"], ds["n_train"],
                                              ds["n_val"], ds["bytes_train"], [Path(d) for d in ds["label_dirs"]]),
                              Path(t.job["cache_store"]))
        t._sampler = GpuSampler(t.job.get("devices") or [])
        t.wandb()  # connect now, not inside the first checkpoint commit
    SIGNALS.check()


def _on_epoch_start(t: YoloopsTrainer) -> None:
    SIGNALS.check()
    t._epoch_t0, t._gpu_t0 = time.perf_counter(), time.monotonic()


def _on_batch_start(t: YoloopsTrainer) -> None:
    if t._first_step is None:
        t._first_step = round(time.time() - process_start(), 2)
        if _is_main():
            emit(f"yoloops-timing time_to_first_step_s={t._first_step}")


def _on_batch_end(t: YoloopsTrainer) -> None:
    SIGNALS.check()


def _on_epoch_end(t: YoloopsTrainer) -> None:
    t._train_s = time.perf_counter() - t._epoch_t0
    t._gpu_util = t._sampler.mean_since(t._gpu_t0) if t._sampler is not None else None


_HOOKS = {
    "on_train_start": _on_train_start,
    "on_train_epoch_start": _on_epoch_start,
    "on_train_batch_start": _on_batch_start,
    "on_train_batch_end": _on_batch_end,
    "on_train_epoch_end": _on_epoch_end,
}


def rank_errors(ckpt_dir: Path) -> str:
    """The reasons DDP ranks left behind (see YoloopsTrainer.train), for the launching process."""
    texts = []
    for f in sorted(ckpt_dir.glob("yoloops-rank*-error.txt")):
        with contextlib.suppress(OSError):
            texts.append(f.read_text().strip())
            f.unlink()
    if texts:
        log("DDP ranks failed: " + " | ".join(texts))
    return " | ".join(texts)
