"""The Ultralytics trainer as the job runs it: atomic checkpoints, one metric line per epoch, W&B mirror."""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from .common import PROCESS_START, emit, format_metric_line, log
from .config import resolve_model
from .dataset import save_label_caches
from .outputs import metric_float, metric_values, per_class_map, write_outputs
from .resume import EPOCH_LOG, Signals


def trainer_class(sig: Signals):
    from ultralytics.models.yolo.detect import DetectionTrainer

    class Trainer(DetectionTrainer):
        """Checkpoints at <ckpt>/last.pt, written atomically, never interrupted by SIGTERM."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            with contextlib.suppress(OSError):
                self.wdir.rmdir()
            self.wdir = self.save_dir
            self.last, self.best = self.wdir / "last.pt", self.wdir / "best.pt"

        def save_model(self):
            sig.critical += 1
            last, best = self.last, self.best
            self.last, self.best = last.with_suffix(".pt.partial"), best.with_suffix(".pt.partial")
            try:
                ok = super().save_model()
                for tmp, final in ((self.last, last), (self.best, best)):
                    if tmp.exists():
                        os.replace(tmp, final)  # a kill -9 mid-write leaves the previous last.pt intact
                return ok
            finally:
                self.last, self.best = last, best
                sig.critical -= 1

    return Trainer


def fit(paths, cfg, ds, speed, sig, state, wandb, first_step, cache_store) -> dict:
    last = paths.checkpoints / "last.pt"
    overrides: dict[str, Any] = {
        "data": str(ds.yaml_path),
        "save_dir": str(paths.checkpoints),
        "exist_ok": True,
        **speed,
    }
    if state == "resumable":
        overrides.update(model=str(last), resume=str(last))
        log(f"resuming from {last}")
    else:
        overrides.update(
            model=resolve_model(cfg, paths), epochs=cfg.epochs, imgsz=cfg.imgsz, patience=cfg.patience,
            optimizer=cfg.optimizer, lrf=cfg.lrf, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
            warmup_epochs=cfg.warmup_epochs, close_mosaic=cfg.close_mosaic, mosaic=cfg.mosaic,
            fliplr=cfg.fliplr, seed=cfg.seed, cos_lr=cfg.cos_lr, plots=cfg.plots, compile=cfg.compile,
            project=str(paths.checkpoints.parent), name=paths.checkpoints.name, save=True, save_period=-1,
            val=True, verbose=True,
        )
        if cfg.lr0:
            overrides["lr0"] = cfg.lr0
        for f in (paths.checkpoints / "results.csv", paths.checkpoints / EPOCH_LOG):
            f.unlink(missing_ok=True)  # a fresh run must not inherit rows of an older one
    trainer = trainer_class(sig)(overrides=overrides)
    state_cb: dict[str, Any] = {"pending": False}

    def on_train_start(t):
        save_label_caches(ds, cache_store)
        sig.check()

    def on_epoch_start(t):
        sig.check()
        state_cb["t0"] = time.perf_counter()

    def on_batch_start(t):
        if not first_step:
            first_step["time_to_first_step_s"] = round(time.time() - PROCESS_START, 2)
            emit(f"yoloops-timing time_to_first_step_s={first_step['time_to_first_step_s']}")

    def on_batch_end(t):
        sig.check()

    def on_epoch_end(t):
        state_cb["train_s"] = time.perf_counter() - state_cb["t0"]
        state_cb["pending"] = True

    def on_fit_epoch_end(t):
        if not state_cb["pending"]:
            return  # final_eval's extra call: the closing line is printed after train() returns
        state_cb["pending"] = False
        n = len(t.train_loader.dataset)
        values: dict[str, Any] = {"epoch": t.epoch + 1, **metric_values(t.metrics)}
        losses = t.label_loss_items(t.tloss) if t.tloss is not None else {}
        values["box_loss"] = metric_float(losses, "train/box_loss")
        values["images_per_s"] = round(n / max(state_cb["train_s"], 1e-9), 2)
        emit(format_metric_line(values))
        with (paths.checkpoints / EPOCH_LOG).open("a") as f:
            f.write(json.dumps(values) + "\n")
        wandb.log(values, step=values["epoch"])
        sig.check()

    for event, fn in (("on_train_start", on_train_start), ("on_train_epoch_start", on_epoch_start),
                      ("on_train_batch_start", on_batch_start), ("on_train_batch_end", on_batch_end),
                      ("on_train_epoch_end", on_epoch_end), ("on_fit_epoch_end", on_fit_epoch_end)):
        trainer.add_callback(event, fn)
    trainer.train()
    sig.check()
    final = metric_values(trainer.metrics or {})
    per_class = per_class_map(getattr(trainer.validator, "metrics", None), ds.names)
    emit(format_metric_line({"epoch": trainer.epoch + 1, **final}))
    extra = {**first_step, "resolved": {k: v for k, v in speed.items()}}
    return write_outputs(paths, cfg, final, per_class, extra)
