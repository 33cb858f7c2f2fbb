"""One training job, start to end: config, dataset, machine, train or resume, outputs, failure line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import tempfile
from pathlib import Path

from .common import JobFailure, Terminated, emit, format_metric_line, log
from .config import Paths, TrainConfig, load_config
from .dataset import prepare_dataset, restore_label_caches
from .offline import make_offline, patch_ultralytics
from .outputs import metric_values, per_class_map, write_failure, write_outputs
from .resume import DONE_MARKER, Signals, checkpoint_state, read_epoch_log
from .throughput import detect_machine, resolve_throughput
from .tracking import WandbRun
from .trainer import fit


def train(paths: Paths, cfg: TrainConfig, sig: Signals) -> dict:
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    # The image sets YOLO_CONFIG_DIR (fonts baked in); local runs get a stable per-machine dir.
    config_dir = Path(os.environ.get("YOLO_CONFIG_DIR") or Path(tempfile.gettempdir()) / "yoloops-ultralytics")
    make_offline(config_dir)
    ds = prepare_dataset(paths.train, paths.work, cfg.val_fraction)
    log(f"dataset {ds.root}: {ds.n_train} train / {ds.n_val} val images, classes {ds.names}")
    if cfg.export_onnx:
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise JobFailure("export_onnx=true but the onnx package is not installed in this image") from None

    patch_ultralytics(config_dir)
    machine = detect_machine()
    speed = resolve_throughput(cfg, machine, ds.n_train, ds.bytes_train)
    log(f"machine {machine}; throughput settings {speed}")
    cache_store = paths.checkpoints / "label_cache"
    restore_label_caches(ds, cache_store)

    last = paths.checkpoints / "last.pt"
    state, _ckpt = ("finished", {}) if (paths.checkpoints / DONE_MARKER).exists() else checkpoint_state(last)
    if state == "corrupt":
        last.rename(last.with_suffix(".pt.corrupt"))
        state = "none"
    wandb = WandbRun(paths.checkpoints, cfg.wandb_project, dataclasses.asdict(cfg))
    first_step: dict[str, float] = {}
    try:
        if state == "finished":
            log(f"{last} is a finished run: not retraining; producing outputs from its best.pt")
            return _outputs_from_finished(paths, cfg, ds, speed, wandb)
        return fit(paths, cfg, ds, speed, sig, state, wandb, first_step, cache_store)
    finally:
        wandb.finish()


def _outputs_from_finished(paths, cfg, ds, speed, wandb) -> dict:
    from ultralytics import YOLO

    ckpt = paths.checkpoints
    best = ckpt / "best.pt" if (ckpt / "best.pt").exists() else ckpt / "last.pt"
    model = YOLO(str(best))
    imgsz = int((model.ckpt or {}).get("train_args", {}).get("imgsz", cfg.imgsz))
    res = model.val(data=str(ds.yaml_path), imgsz=imgsz, batch=speed["batch"], device=speed["device"],
                    plots=False, project=str(paths.work), name="val", exist_ok=True, verbose=False)
    final = metric_values(res.results_dict)
    n = len(read_epoch_log(ckpt)) or 0
    emit(format_metric_line({"epoch": n, **final}))
    return write_outputs(paths, cfg, final, per_class_map(res, ds.names), {"retrained": False})


def main(argv: list[str] | None = None) -> int:
    paths = Paths.from_env()
    sig = Signals()
    previous = None
    with contextlib.suppress(ValueError):  # only the main thread may install handlers
        previous = signal.signal(signal.SIGTERM, sig.handler)
    try:
        cfg = load_config(paths)
        log(f"config {dataclasses.asdict(cfg)}")
        metrics = train(paths, cfg, sig)
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
