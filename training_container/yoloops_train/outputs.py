"""What a finished job leaves in <base>/model (SageMaker tars it into model.tar.gz) and <base>/output."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from typing import Any

from .common import log
from .config import Paths, TrainConfig
from .resume import DONE_MARKER, atomic_write, read_ledger


def metric_float(d: dict, *keys: str) -> float:
    for k in keys:
        if k in d and d[k] is not None:
            return float(d[k])
    return 0.0


def metric_values(metrics: dict) -> dict[str, float]:
    return {
        "mAP50": metric_float(metrics, "metrics/mAP50(B)"),
        "mAP50-95": metric_float(metrics, "metrics/mAP50-95(B)"),
        "precision": metric_float(metrics, "metrics/precision(B)"),
        "recall": metric_float(metrics, "metrics/recall(B)"),
    }


def per_class_map(validator_metrics, names: list[str]) -> dict[str, float]:
    try:
        maps = list(validator_metrics.box.maps)
    except AttributeError:
        return {}
    return {str(n): round(float(maps[i]), 6) for i, n in enumerate(names) if i < len(maps)}


def write_outputs(paths: Paths, cfg: TrainConfig, final: dict[str, float], per_class: dict[str, float],
                  extra: dict[str, Any]) -> dict:
    ckpt = paths.checkpoints
    paths.model.mkdir(parents=True, exist_ok=True)
    best = ckpt / "best.pt" if (ckpt / "best.pt").exists() else ckpt / "last.pt"
    shutil.copy2(best, paths.model / "best.pt")
    for name in ("results.csv", "args.yaml"):
        if (ckpt / name).exists():
            shutil.copy2(ckpt / name, paths.model / name)
    ledger = read_ledger(ckpt)
    epochs = ledger["records"]
    rates = [r["images_per_s"] for r in epochs if r.get("images_per_s")]
    gpu = [r["gpu_util"] for r in epochs if r.get("gpu_util") is not None]
    n_csv = 0
    if (ckpt / "results.csv").exists():
        n_csv = max(0, len((ckpt / "results.csv").read_text().strip().splitlines()) - 1)
    metrics = {
        **final,
        "per_class_mAP50-95": per_class,
        "epochs_run": n_csv or len(epochs),
        "epochs_requested": cfg.epochs,
        # steady state: the first epoch of each job includes warm-up (cache fill, cudnn autotune)
        "images_per_s": round(sorted(rates)[len(rates) // 2], 2) if rates else 0.0,
        "images_per_s_by_epoch": [round(r, 2) for r in rates],
        **({"gpu_util": round(sum(gpu) / len(gpu), 1)} if gpu else {}),  # mean GPU busy %, NVML
        **({"time_to_first_step_s": ledger["time_to_first_step_s"]} if "time_to_first_step_s" in ledger else {}),
        **extra,
    }
    (paths.model / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def write_failure(paths: Paths, reason: str) -> None:
    line = " ".join(str(reason).split())[:1000] or "training failed"
    with contextlib.suppress(OSError):
        paths.output.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(line + "\n")
    log(f"FAILED: {line}")


def mark_done(paths: Paths, final: dict[str, float]) -> None:
    """The job's outputs are complete: a restarted job (same checkpoints) only rebuilds them, never retrains."""
    atomic_write(paths.checkpoints / DONE_MARKER, json.dumps({"finished_at": time.time(), "metrics": final}))
    for copy in paths.checkpoints.glob("*.committed.pt"):  # final_eval's safety copies (trainer.py): done
        copy.unlink(missing_ok=True)
