#!/usr/bin/env python3
"""Container defaults vs plain Ultralytics defaults, side by side on the same device and dataset.

    python bench/gpu_train_bench.py            # GPU: yolo11n and yolo12s, 2000 x 640px images, 3 epochs a side
    python bench/gpu_train_bench.py --tiny     # CPU: yolo11n, 64 x 128px images, 2 epochs (a few minutes)

For each model both sides run as separate processes on their own copy of one generated dataset (so neither
reuses the other's label cache): the container entrypoint, and plain `YOLO(w).train(data, epochs)`. Prints
steady-state training images/s (median per-epoch, validation excluded) and its ratio, time from process start
to the first training step, GPU busy % after that first step, wall time (the container's without the model
bundle export it also does, which plain Ultralytics doesn't) and the final mAP50-95 of both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = ROOT / "training_container" / "train.py"

# Plain Ultralytics: `YOLO(model).train(data=..., epochs=...)` with every other argument left at its default
# (imgsz given only so both sides train at the same resolution). The callbacks only observe.
PLAIN = r"""
import json, sys, time
T0 = time.time()
from ultralytics import YOLO
data, model, epochs, imgsz, project = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
st = {"rates": [], "first": None}
def batch_start(t):
    if st["first"] is None:
        st["first"] = time.time() - T0
def epoch_start(t):
    st["t0"] = time.perf_counter()
def epoch_end(t):
    st["rates"].append(len(t.train_loader.dataset) / (time.perf_counter() - st["t0"]))
m = YOLO(model)
m.add_callback("on_train_batch_start", batch_start)
m.add_callback("on_train_epoch_start", epoch_start)
m.add_callback("on_train_epoch_end", epoch_end)
m.train(data=data, epochs=epochs, imgsz=imgsz, project=project, name="plain", exist_ok=True)
tr = m.trainer
print("BENCH " + json.dumps({"rates": st["rates"], "first_step_s": st["first"], "batch": tr.batch_size,
      "workers": tr.args.workers, "amp": str(tr.args.amp), "cache": str(tr.args.cache),
      "map": (tr.metrics or {}).get("metrics/mAP50-95(B)")}), flush=True)
"""


class GpuSampler:
    """Samples GPU utilisation every 0.25 s (NVML, else nvidia-smi); no-op without a GPU."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._read = self._backend()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _backend():
        try:
            import pynvml

            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
        except Exception:
            pass
        if shutil.which("nvidia-smi"):
            def smi():
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5).stdout
                return float(out.strip().splitlines()[0])
            try:
                smi()
                return smi
            except Exception:
                return None
        return None

    def __enter__(self):
        if self._read:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._read:
            self._thread.join(timeout=5)

    def _loop(self):
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append((time.time(), self._read()))
            self._stop.wait(0.25)

    def busy_after(self, t: float) -> float | None:
        vals = [u for ts, u in self.samples if ts >= t]
        return round(statistics.mean(vals), 1) if vals else None


def run_container(ds: Path, work: Path, a, model: str) -> dict:
    base = work / "container"
    shutil.rmtree(base, ignore_errors=True)
    (base / "input" / "config").mkdir(parents=True)
    shutil.copytree(ds, base / "input" / "data" / "train")
    hp = {"model": model, "epochs": str(a.epochs), "imgsz": str(a.imgsz)}
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    env.pop("YOLO_CONFIG_DIR", None)
    start = time.time()
    with GpuSampler() as gpu:
        proc = subprocess.run([sys.executable, str(TRAIN_PY)], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"container run failed: {(base / 'output' / 'failure').read_text().strip()}")
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    rates = metrics["images_per_s_by_epoch"]
    first = metrics.get("time_to_first_step_s") or 0.0
    export_s = json.loads((base / "model" / "model.json").read_text()).get("export_seconds", 0.0)
    wall = time.time() - start
    return {"rates": rates, "first_step_s": first, "gpu_busy_pct": gpu.busy_after(start + first),
            "wall_s": round(wall - export_s, 1), "export_s": export_s, "settings": metrics.get("resolved"),
            "mAP50-95": metrics["mAP50-95"], "gpu_util_nvml": metrics.get("gpu_util")}


def run_plain(ds: Path, work: Path, a, model: str) -> dict:
    data = work / "plain_ds"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(ds, data)
    env = {**os.environ, "YOLO_CONFIG_DIR": str(work / "plain_cfg")}
    start = time.time()
    with GpuSampler() as gpu:
        proc = subprocess.run([sys.executable, "-c", PLAIN, str(data / "data.yaml"), model, str(a.epochs),
                               str(a.imgsz), str(work / "plain_runs")], env=env, capture_output=True, text=True,
                              cwd=work)
    m = re.search(r"^BENCH (.*)$", proc.stdout, re.M)
    if proc.returncode or not m:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit("plain Ultralytics run failed")
    r = json.loads(m.group(1))
    return {"rates": r["rates"], "first_step_s": round(r["first_step_s"] or 0.0, 2),
            "gpu_busy_pct": gpu.busy_after(start + (r["first_step_s"] or 0.0)),
            "wall_s": round(time.time() - start, 1), "mAP50-95": r.get("map"),
            "settings": {k: r[k] for k in ("batch", "workers", "amp", "cache")}}


def steady(rates: list[float]) -> float:
    """Median per-epoch images/s, first epoch dropped when there are more (warm-up: RAM cache, autotune)."""
    rs = rates[1:] if len(rates) > 1 else rates
    return round(statistics.median(rs), 1) if rs else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="CPU-sized: 64 x 128px images, 2 epochs")
    p.add_argument("--models", help="comma-separated (default: yolo11n.yaml,yolo12s.yaml; --tiny: yolo11n.yaml)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--imgsz", type=int)
    p.add_argument("--n-train", type=int)
    p.add_argument("--n-val", type=int)
    p.add_argument("--work", type=Path, default=Path("/tmp/yoloops-bench"))
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    defaults = dict(epochs=2, imgsz=128, n_train=64, n_val=16) if a.tiny else \
        dict(epochs=3, imgsz=640, n_train=2000, n_val=200)
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    models = (a.models or ("yolo11n.yaml" if a.tiny else "yolo11n.yaml,yolo12s.yaml")).split(",")

    sys.path.insert(0, str(ROOT))  # bench runs from a checkout; yoloops may not be installed
    from yoloops.synth import generate_dataset

    a.work.mkdir(parents=True, exist_ok=True)
    ds = a.work / f"shapes-{a.n_train}-{a.n_val}-{a.imgsz}"
    t = time.time()
    if not (ds / "data.yaml").exists():
        shutil.rmtree(ds, ignore_errors=True)
        generate_dataset(ds, n_train=a.n_train, n_val=a.n_val, imgsz=a.imgsz, layout="ultralytics", seed=1)
    print(f"dataset {ds} ({a.n_train} train / {a.n_val} val, {a.imgsz}px) ready in {time.time() - t:.1f}s",
          flush=True)

    summaries, raw = [], {}
    for model in models:
        results = {}
        for name, fn in (("container", run_container), ("plain", run_plain)):
            print(f"running {model} {name} ...", flush=True)
            results[name] = r = fn(ds, a.work, a, model)
            r["images_per_s"] = steady(r["rates"])
            print(f"  {name}: {r['images_per_s']} img/s (per epoch {[round(x, 1) for x in r['rates']]}), "
                  f"first step after {r['first_step_s']}s, GPU busy {r['gpu_busy_pct']}%, wall {r['wall_s']}s, "
                  f"mAP50-95 {r['mAP50-95']}, settings {r['settings']}", flush=True)
        c, pl = results["container"], results["plain"]
        workers = (c.get("settings") or {}).get("workers") or 0
        summary = {
            "model": model, "imgsz": a.imgsz, "epochs": a.epochs, "n_train": a.n_train,
            "container_images_per_s": c["images_per_s"], "plain_images_per_s": pl["images_per_s"],
            "ratio": round(c["images_per_s"] / pl["images_per_s"], 2) if pl["images_per_s"] else None,
            "container_first_step_s": c["first_step_s"], "plain_first_step_s": pl["first_step_s"],
            "container_gpu_busy_pct": c["gpu_busy_pct"], "plain_gpu_busy_pct": pl["gpu_busy_pct"],
            "container_wall_s": c["wall_s"], "plain_wall_s": pl["wall_s"], "container_export_s": c["export_s"],
            "container_mAP50-95": c["mAP50-95"], "plain_mAP50-95": pl["mAP50-95"],
            "container_images_per_s_per_worker": round(c["images_per_s"] / workers, 1) if workers else None,
        }
        print("RESULT " + json.dumps(summary), flush=True)
        summaries.append(summary)
        raw[model] = results
    print(f"{'model':<16}{'img/s container':>16}{'img/s plain':>12}{'ratio':>7}{'1st step c/p s':>16}"
          f"{'GPU% c/p':>12}{'wall c/p s':>14}", flush=True)
    for r in summaries:
        pair = {k: f"{r['container_' + k]}/{r['plain_' + k]}" for k in ("first_step_s", "gpu_busy_pct", "wall_s")}
        print(f"{r['model']:<16}{r['container_images_per_s']:>16}{r['plain_images_per_s']:>12}{r['ratio']!s:>7}"
              f"{pair['first_step_s']:>16}{pair['gpu_busy_pct']:>12}{pair['wall_s']:>14}", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"summary": summaries, "runs": raw}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
