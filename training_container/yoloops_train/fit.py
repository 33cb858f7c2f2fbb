"""Train, fresh or resumed, on the CPU, one GPU or all of them (DDP), and validate the best model.

Imported only after the environment is made offline (it imports Ultralytics through .trainer).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from .common import JobFailure, Terminated, log
from .config import Paths, TrainConfig, resolve_model
from .dataset import PreparedDataset
from .outputs import metric_values, per_class_map
from .resume import SIGNALS, checkpoint_state, committed_epochs, emit_pending, reconcile, reset
from .seals import SEALS, trusted
from .storage import commit_copy, run_dir
from .throughput import fallback_workers, is_loader_crash, world_size
from .tracking import WandbRun
from .trainer import JOB_ENV, YoloopsTrainer, job_context, rank_errors


def _overrides(paths: Paths, cfg: TrainConfig, ds: PreparedDataset, speed: dict[str, Any], state: str) -> dict:
    last = paths.checkpoints / "last.pt"
    run = run_dir(paths.work)  # never the checkpoint mount: Ultralytics deletes its save_dir on a fresh DDP run
    overrides: dict[str, Any] = {"data": str(ds.yaml_path), "save_dir": str(run), "exist_ok": True, **speed}
    if state == "resumable":
        overrides.update(model=str(last), resume=str(last))
        return overrides
    overrides.update(
        model=resolve_model(cfg, paths), epochs=cfg.epochs, imgsz=cfg.imgsz, patience=cfg.patience,
        optimizer=cfg.optimizer, lrf=cfg.lrf, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        warmup_epochs=cfg.warmup_epochs, close_mosaic=cfg.close_mosaic, mosaic=cfg.mosaic,
        fliplr=cfg.fliplr, seed=cfg.seed, cos_lr=cfg.cos_lr, plots=cfg.plots, compile=cfg.compile,
        project=str(run.parent), name=run.name, save=True, save_period=-1,
        val=True, verbose=True,
    )
    if cfg.lr0:
        overrides["lr0"] = cfg.lr0
    return overrides


def _stage_results(paths: Paths) -> None:
    """A resumed Ultralytics run appends to <save_dir>/results.csv: start it from the committed copy."""
    csv = paths.checkpoints / "results.csv"
    run = run_dir(paths.work)
    run.mkdir(parents=True, exist_ok=True)
    if csv.exists():
        commit_copy(csv, run / "results.csv")


def prepare_resume(paths: Paths, cfg: TrainConfig) -> tuple[str, int]:
    """(state, committed epochs): results.csv and the ledger cut back to last.pt, missed lines printed."""
    last = paths.checkpoints / "last.pt"
    state, ckpt = checkpoint_state(last)
    if state in {"corrupt", "untrusted"}:  # set aside, never loaded: start fresh
        last.rename(last.with_suffix(f".pt.{state}"))
        state, ckpt = "none", {}
    if state == "none":
        reset(paths.checkpoints)
        return state, 0
    committed = committed_epochs(ckpt, paths.checkpoints)
    reconcile(paths.checkpoints, committed)
    catch_up(paths, cfg, committed)
    return state, committed


def catch_up(paths: Paths, cfg: TrainConfig, committed: int) -> None:
    """Print the metric lines of committed epochs a kill kept from being printed (and mirror them to W&B)."""
    from .resume import pending_records

    if not pending_records(paths.checkpoints, committed):
        return
    wandb = WandbRun(paths.checkpoints, cfg.wandb_project, dataclasses.asdict(cfg))
    try:
        emit_pending(paths.checkpoints, committed, wandb)
    finally:
        wandb.finish()


def fit(paths: Paths, cfg: TrainConfig, ds: PreparedDataset, speed: dict[str, Any],
        devices: list[str]) -> tuple[dict[str, float], dict[str, float], int]:
    """Train to the requested epochs; (final metrics of best.pt, per-class mAP50-95, epochs trained).

    A DataLoader worker crash (Bus error: /dev/shm too small for the batches in flight) is retried here, in
    the same process, from the last checkpoint: with half the workers, then with none (no shared memory).
    """
    ranks = world_size(speed)
    os.environ[JOB_ENV] = job_context(ds, paths.checkpoints / "label_cache", devices, cfg.wandb_project,
                                      dataclasses.asdict(cfg), checkpoints=paths.checkpoints)
    attempts = [speed["workers"], *fallback_workers(speed["workers"])]
    for i, workers in enumerate(attempts):
        state, committed = prepare_resume(paths, cfg)
        if state == "finished":  # an earlier attempt trained every epoch, then crashed in the final validation
            break
        if state == "resumable":
            log(f"resuming from {paths.checkpoints / 'last.pt'} after epoch {committed}")
            _stage_results(paths)
        trainer = YoloopsTrainer(overrides=_overrides(paths, cfg, ds, {**speed, "workers": workers}, state))
        SIGNALS.forward = ranks > 1
        try:
            trainer.train()
        except Terminated:
            raise
        except Exception as e:
            if SIGNALS.terminated:
                raise Terminated() from e
            reason = (rank_errors(run_dir(paths.work)) if ranks > 1 else "") or f"{type(e).__name__}: {e}"
            if i + 1 < len(attempts) and is_loader_crash(reason):
                nxt = attempts[i + 1]
                log(f"DataLoader crashed ({reason[:300]}); retrying from the last checkpoint with workers={nxt}"
                    + (" (no shared memory)" if nxt == 0 else ""))
                continue
            raise
        finally:
            SIGNALS.forward = False
        SIGNALS.check()
        if ranks == 1:  # final_eval validated best.pt in this process
            final = metric_values(trainer.metrics or {})
            return final, per_class_map(getattr(trainer.validator, "metrics", None), ds.names), trainer.epoch + 1
        break
    # DDP (the ranks' validation stayed in their processes) or an attempt that finished: validate here
    final, per_class = validate_best(paths, cfg, ds, speed)
    _, ckpt = checkpoint_state(paths.checkpoints / "last.pt")
    return final, per_class, committed_epochs(ckpt, paths.checkpoints)


def validate_best(paths: Paths, cfg: TrainConfig, ds: PreparedDataset,
                  speed: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    from ultralytics import YOLO

    ckpt = paths.checkpoints
    best = ckpt / "best.pt" if (ckpt / "best.pt").exists() else ckpt / "last.pt"
    if not best.exists():
        raise JobFailure(f"no checkpoint in {ckpt} to validate")
    if not trusted(best):
        raise JobFailure(f"{best} was not written by this job (no matching sha256 in {SEALS}); not loaded")
    model = YOLO(str(best))
    imgsz = int((model.ckpt or {}).get("train_args", {}).get("imgsz", cfg.imgsz))
    device = str(speed["device"]).split(",")[0]  # one process: a single GPU is plenty for validation
    batch = max(1, int(speed["batch"]) // world_size(speed))
    res = model.val(data=str(ds.yaml_path), imgsz=imgsz, batch=batch, device=device, plots=False,
                    project=str(Path(paths.work)), name="val", exist_ok=True, verbose=False)
    return metric_values(res.results_dict), per_class_map(res, ds.names)
