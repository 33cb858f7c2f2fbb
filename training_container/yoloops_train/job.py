"""One training job, start to end: config, dataset, machine, train or resume, outputs, bundle, failure line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from . import common, host
from .common import JobFailure, Terminated, emit, format_metric_line, log
from .config import Paths, TrainConfig, load_config
from .dataset import prepare_dataset, restore_label_caches
from .ddp import plan_shm, rank_env
from .offline import make_offline, patch_ultralytics
from .outputs import mark_done, write_failure, write_outputs
from .probe import host_paths, run_probe
from .resume import (
    DONE_MARKER,
    SIGNALS,
    checkpoint_state,
    committed_epochs,
    read_epoch_log,
    restore_committed,
)
from .seals import trusted
from .snapshot import verify_snapshot
from .throughput import detect_machine, gpu_devices, resolve_throughput, world_size

_started = False


def check_host(paths: Paths, cfg: TrainConfig, **collect_kw) -> host.HostFacts:
    """Log what the job runs on; stop at once (GpuUnavailable, never retried) if its GPUs cannot be used."""
    facts = host.collect(host_paths(paths), **collect_kw)
    for line in facts.lines():
        log(line)
    if cfg.device != "cpu":  # an explicit device=cpu is a choice, not a broken image
        host.check_gpu(facts)
    return facts


def train(paths: Paths, cfg: TrainConfig) -> dict:
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    check_host(paths, cfg)
    # The image sets YOLO_CONFIG_DIR (fonts baked in); local runs get a stable per-machine dir.
    config_dir = Path(os.environ.get("YOLO_CONFIG_DIR") or Path(tempfile.gettempdir()) / "yoloops-ultralytics")
    make_offline(config_dir)
    verify_snapshot(paths.train, paths.base)  # "dataset changed after validation" stops it before epoch 1
    ds = prepare_dataset(paths.train, paths.work, cfg.val_fraction)
    log(f"dataset {ds.root}: {ds.n_train} train / {ds.n_val} val images, classes {ds.names}")

    patch_ultralytics(config_dir)
    from .config import resolve_model
    from .fit import catch_up, fit, validate_best  # imports Ultralytics: only now, offline

    machine = detect_machine()
    speed = resolve_throughput(cfg, machine, ds.n_train, ds.bytes_train)
    devices = gpu_devices(cfg, machine)
    ranks = world_size(speed)
    log(f"machine: {machine.describe()}")
    shm = plan_shm(machine.shm_bytes, speed["workers"], speed["batch"] // ranks, ranks, cfg.imgsz)
    os.environ.update(rank_env(str(config_dir), shm.nccl_shm_disable and ranks > 1))  # the DDP ranks inherit it
    if machine.shm_bytes:
        log(shm.describe(machine.shm_bytes))
    log(f"settings: {speed}; {ranks} training process(es)" + (" (DDP, one per GPU)" if ranks > 1 else "")
        + f"; batch {speed['batch'] // ranks} per process, {speed['workers']} loader workers per process")
    restore_label_caches(ds, paths.checkpoints / "label_cache")
    restore_committed(paths.checkpoints)

    last = paths.checkpoints / "last.pt"
    best = paths.checkpoints / "best.pt" if (paths.checkpoints / "best.pt").exists() else last
    done = (paths.checkpoints / DONE_MARKER).exists() and trusted(best)  # seals.py: only this job's files
    state, ckpt = ("finished", {}) if done else checkpoint_state(last)
    if state == "finished":
        log(f"{last} is a finished run: not retraining; producing outputs from its best.pt")
        committed = committed_epochs(ckpt, paths.checkpoints) if ckpt else len(read_epoch_log(paths.checkpoints))
        catch_up(paths, cfg, committed)
        final, per_class = validate_best(paths, cfg, ds, speed)
        epochs, extra = committed, {"retrained": False}
    else:
        final, per_class, epochs = fit(paths, cfg, ds, speed, devices)
        extra = {"resolved": dict(speed), "world_size": ranks}
    from .paired import paired_evaluation

    extra.update(paired_evaluation(paths, cfg, ds, speed))  # "evaluation" (challenger vs champion), "thresholds"
    # the last line is best.pt's validation: SageMaker's FinalMetricDataList picks it
    emit(format_metric_line({"epoch": epochs, **final}))
    metrics = write_outputs(paths, cfg, final, per_class, extra)
    _bundle(paths, cfg, ds, metrics, resolve_model)
    mark_done(paths, final)
    return metrics


def _bundle(paths: Paths, cfg: TrainConfig, ds, metrics: dict, resolve_model) -> None:
    from .export import build_bundle

    try:
        base = cfg.base_weights_key or cfg.base_weights or Path(resolve_model(cfg, paths)).name
    except JobFailure:
        base = cfg.model
    hyper = dataclasses.asdict(cfg)
    try:
        build_bundle(paths.model, paths.work / "bundle", imgsz=cfg.imgsz, names=ds.names, hyperparameters=hyper,
                     metrics={k: v for k, v in metrics.items()
                              if k not in {"images_per_s_by_epoch", "evaluation", "thresholds"}},
                     dataset_version=cfg.dataset_version, base_weights=base, n_train=ds.n_train, n_val=ds.n_val,
                     thresholds=metrics.get("thresholds"))
    except BaseException:
        # no partial bundle: SageMaker must not upload a model.tar.gz missing formats
        shutil.rmtree(paths.model, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    global _started
    # DDP ranks and the time-to-first-step figure measure from the job's start (import time for the first job
    # in a process, now for any later one, as in the tests)
    os.environ[common.START_ENV] = str(common.PROCESS_START if not _started else time.time())
    _started = True
    paths = Paths.from_env()
    SIGNALS.reset()
    previous = SIGNALS.install()
    try:
        cfg = load_config(paths)
        log(f"config {dataclasses.asdict(cfg)}")
        if cfg.yoloops_mode == "probe":
            run_probe(paths)
            return 0
        metrics = train(paths, cfg)
        log(f"done: {json.dumps({k: v for k, v in metrics.items() if k != 'images_per_s_by_epoch'})}")
        return 0
    except Terminated:
        write_failure(paths, "stopped by SIGTERM (spot interruption or stop request); checkpoint kept in "
                             f"{paths.checkpoints} for resume")
        return 143
    except JobFailure as e:
        write_failure(paths, str(e))
        return 2
    except Exception as e:  # anything else: still one clear line, and the traceback in the logs
        import traceback

        traceback.print_exc()
        write_failure(paths, f"{type(e).__name__}: {e}")
        return 1
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous)
