#!/usr/bin/env python3
"""Training throughput you can trust: three legs, interleaved and repeated, timed over a window of steps.

    python bench/gpu_train_bench.py              # one GPU: yolo11n and yolo12s at 640 px (sized for ~10 min
                                                 # on one H100; not yet run on a GPU)
    python bench/gpu_train_bench.py --tiny       # CPU smoke check: yolo11n at 64 px (a few minutes)

Legs, each its own process on one shared dataset (its label cache primed once, so no leg pays for it alone):
  1. plain    `YOLO(model).train(data, epochs, imgsz)`, every other argument at Ultralytics' default;
  2. tuned    the same call with the container's resolved settings (batch, workers, cache, amp, ...);
  3. container  training_container/train.py, the SageMaker entrypoint, on that dataset as its train channel.
Leg 2 / leg 1 is the settings gain; leg 3 / leg 2 is the container's own overhead (should be ~1.0). The legs run
in rotated order, `--repeats` times; each figure is the median of its repeats.

Throughput: a hook (sitecustomize on PYTHONPATH, the same in every leg) counts training steps inside each
epoch and times `--window` steps after `--warm` steps (CUDA synchronised at both ends), then ends the process:
validation, the final evaluation and the container's export never fall into a window. The dataset spans at
least 10 x the train loader's prefetch (workers x 4 batches in Ultralytics 8.4.190) of every leg and covers
warm + window steps, so a window is never served from batches loaded before it started.

The container leg runs again pinned to 4 and 8 cores (taskset): images/s per vCPU, and images per dollar on
ml.g5.xlarge (4 vCPUs) against ml.g5.2xlarge (8 vCPUs, same A10G GPU) at the shipped prices. Run on another
GPU, that comparison says how the CPU count limits this pipeline; the absolute figures belong to that GPU.
Goals (same GPU, one run): leg 3 >= 4 x leg 1 for yolo11n, >= 3 x for yolo12s; time to first step <= 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = ROOT / "training_container" / "train.py"
TRAIN_PREFETCH = 4  # ultralytics/data/build.py: prefetch_factor=4 for the (shuffled) train loader
GOALS = {"yolo11n": 4.0, "yolo12s": 3.0}
FIRST_STEP_GOAL_S = 10.0

# Loaded in every leg's interpreter (PYTHONPATH): patches BaseTrainer when Ultralytics is imported, never
# earlier (the container must make the environment offline before its first `import ultralytics`).
HOOK = r'''
import importlib.abc, importlib.machinery, json, os, sys, time
T0 = time.time()
WARM, WINDOW = int(os.environ["BENCH_WARM"]), int(os.environ["BENCH_WINDOW"])
EPOCHS, OUT = int(os.environ["BENCH_EPOCHS"]), os.environ["BENCH_OUT"]
S = {"first": None, "step": 0, "t0": None, "windows": []}

def _sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()

def _epoch(t):
    S["step"] = 0

def _start(t):
    if S["first"] is None:
        S["first"] = time.time() - T0

def _end(t):
    S["step"] += 1
    if S["step"] == WARM:
        _sync(); S["t0"] = time.perf_counter()
    elif S["step"] == WARM + WINDOW:
        _sync()
        S["windows"].append(WINDOW * t.train_loader.batch_size / (time.perf_counter() - S["t0"]))
        if len(S["windows"]) >= EPOCHS:
            a = t.args
            with open(OUT, "w") as f:
                json.dump({"windows": S["windows"], "first_step_s": S["first"], "batch": t.train_loader.batch_size,
                           "workers": t.train_loader.num_workers, "cache": str(a.cache), "amp": str(a.amp),
                           "device": str(a.device), "steps_per_epoch": len(t.train_loader)}, f)
            os._exit(0)

def _patch(mod):
    base = mod.BaseTrainer
    init = base.__init__
    def __init__(self, *a, **k):
        init(self, *a, **k)
        for ev, fn in (("on_train_epoch_start", _epoch), ("on_train_batch_start", _start),
                       ("on_train_batch_end", _end)):
            if fn not in self.callbacks.get(ev, []):
                self.add_callback(ev, fn)
    base.__init__ = __init__

class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "ultralytics.engine.trainer":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            _patch(module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Finder())
'''

PLAIN = r"""
import json, sys
from ultralytics import YOLO
data, model, epochs, imgsz, project, extra = sys.argv[1:7]
YOLO(model).train(data=data, epochs=int(epochs), imgsz=int(imgsz), project=project, name="run", exist_ok=True,
                  **json.loads(extra))
"""


def plain_settings(a) -> dict:
    """What Ultralytics 8.4.190 uses when nothing is given: batch 16, 8 workers (capped by CPUs), no cache."""
    return {"batch": 16, "workers": 8, "cache": False}


def container_settings(a, n_train: int, cpus: int | None = None) -> dict:
    """What the container resolves on this machine (training_container/yoloops_train/throughput.py)."""
    sys.path.insert(0, str(TRAIN_PY.parent))
    from yoloops_train.config import parse_hyperparameters
    from yoloops_train.throughput import detect_machine, resolve_throughput

    machine = detect_machine()
    if cpus:
        import dataclasses

        machine = dataclasses.replace(machine, cpus=cpus)
    cfg = parse_hyperparameters({"model": a.model, "imgsz": str(a.imgsz), "epochs": str(a.epochs)})
    return resolve_throughput(cfg, machine, n_train, n_train * 30_000)


def needed_images(a, settings: list[dict]) -> int:
    """>= 10 x every leg's train prefetch, and at least warm + window steps (+ 2 spare) per epoch."""
    need = 0
    for s in settings:
        prefetch = TRAIN_PREFETCH * min(int(s["workers"]), os.cpu_count() or 1) * int(s["batch"])
        need = max(need, 10 * prefetch, (a.warm + a.window + 2) * int(s["batch"]))
    return need


def make_dataset(a, n_train: int) -> Path:
    """`--unique` generated images, hard-linked (new names) up to n_train: decode and augment cost per image
    stays real, generation time does not grow with the prefetch rule."""
    sys.path.insert(0, str(ROOT))
    from yoloops.synth import generate_dataset

    ds = a.work / f"shapes-{n_train}-{a.imgsz}"
    if (ds / "data.yaml").exists():
        return ds
    shutil.rmtree(ds, ignore_errors=True)
    unique = min(a.unique, n_train)
    generate_dataset(ds, n_train=unique, n_val=a.n_val, imgsz=a.imgsz, layout="ultralytics", seed=1)
    imgs = sorted((ds / "images" / "train").iterdir())
    for i in range(unique, n_train):
        src = imgs[i % unique]
        lbl = ds / "labels" / "train" / (src.stem + ".txt")
        os.link(src, src.with_name(f"dup{i}_{src.name}"))
        os.link(lbl, lbl.with_name(f"dup{i}_{lbl.name}"))
    return ds


def run_leg(leg: str, a, ds: Path, extra: dict, cores: int | None = None) -> dict:
    out = a.work / f"leg-{leg}-{time.time_ns()}.json"
    hook = a.work / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "BENCH_WARM": str(a.warm), "BENCH_WINDOW": str(a.window), "BENCH_EPOCHS": str(a.epochs),
           "BENCH_OUT": str(out), "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    pin = ["taskset", "-c", f"0-{cores - 1}"] if cores else []
    if leg.startswith("container"):
        base = a.work / "container"
        shutil.rmtree(base, ignore_errors=True)
        (base / "input" / "config").mkdir(parents=True)
        (base / "input" / "data").mkdir(parents=True)
        (base / "input" / "data" / "train").symlink_to(ds)
        hp = {"model": a.model, "epochs": str(a.epochs + 1), "imgsz": str(a.imgsz)}
        (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
        env.update(SAGEMAKER_BASE_DIR=str(base), YOLO_CONFIG_DIR=str(a.work / "container_cfg"))
        cmd = [*pin, sys.executable, str(TRAIN_PY)]
    else:
        env["YOLO_CONFIG_DIR"] = str(a.work / "plain_cfg")
        cmd = [*pin, sys.executable, "-c", PLAIN, str(ds / "data.yaml"), a.model, str(a.epochs + 1), str(a.imgsz),
               str(a.work / "plain_runs"), json.dumps(extra)]
    t = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=a.work)
    if not out.exists():
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"leg {leg} ended (rc {proc.returncode}) without timing a window: is an epoch shorter "
                         f"than --warm + --window steps?")
    r = json.loads(out.read_text())
    r.update(images_per_s=round(statistics.median(r["windows"]), 1), wall_s=round(time.time() - t, 1))
    return r


def _extra(settings: dict) -> dict:
    keys = ("batch", "workers", "cache", "amp", "device", "deterministic")
    return {k: settings[k] for k in keys if k in settings}


def bench_model(a, model: str) -> dict:
    a.model = model
    tuned = container_settings(a, 10**6)  # placeholder size: the batch and workers do not depend on it here
    n = max(a.n_train or 0, needed_images(a, [plain_settings(a), tuned]))
    ds = make_dataset(a, n)
    tuned = container_settings(a, n)
    print(f"{model}: {n} train images ({a.unique} unique), >= 10 x each leg's prefetch; container settings "
          f"{_extra(tuned)}", flush=True)
    legs = {"plain": {}, "tuned": _extra(tuned), "container": {}}
    order = list(legs)
    runs: dict[str, list[dict]] = {k: [] for k in legs}
    run_leg("plain", argparse.Namespace(**{**vars(a), "window": 1, "warm": 1, "epochs": 1}), ds, {})  # label cache
    for rep in range(a.repeats):
        for leg in order[rep % 3:] + order[:rep % 3]:
            r = run_leg(leg, a, ds, legs[leg])
            runs[leg].append(r)
            print(f"  {leg:9s} rep {rep + 1}: {r['images_per_s']:8.1f} img/s  first step {r['first_step_s']:.1f} s"
                  f"  (batch {r['batch']}, workers {r['workers']}, cache {r['cache']}, amp {r['amp']})", flush=True)
    pinned = {}
    for cores in a.cores:
        if cores > (os.cpu_count() or 1):
            print(f"  container on {cores} cores: skipped ({os.cpu_count()} here)")
            continue
        r = run_leg(f"container-{cores}c", a, ds, {}, cores=cores)
        pinned[cores] = r
        print(f"  container on {cores} cores: {r['images_per_s']:.1f} img/s = {r['images_per_s'] / cores:.1f} "
              f"img/s per vCPU (workers {r['workers']})", flush=True)
    med = {k: round(statistics.median(x["images_per_s"] for x in v), 1) for k, v in runs.items()}
    first = {k: round(statistics.median(x["first_step_s"] for x in v), 2) for k, v in runs.items()}
    return {"model": model, "n_train": n, "images_per_s": med, "first_step_s": first, "runs": runs,
            "pinned": {str(c): r for c, r in pinned.items()},
            "settings_gain": round(med["tuned"] / med["plain"], 2), "overhead": round(med["container"] / med["tuned"], 3),
            "vs_plain": round(med["container"] / med["plain"], 2)}


def per_dollar(pinned: dict) -> list[str]:
    sys.path.insert(0, str(ROOT / "layers" / "yoloops"))
    from yoloops_core.pricing import hourly_price

    lines = []
    rows = {4: "ml.g5.xlarge", 8: "ml.g5.2xlarge"}
    got = {c: pinned[str(c)]["images_per_s"] * 3600 / hourly_price(t) for c, t in rows.items() if str(c) in pinned}
    for c, t in rows.items():
        if c in got:
            lines.append(f"    {t} ({c} vCPUs, ${hourly_price(t):.3f}/h): {got[c]:,.0f} images per dollar")
    if len(got) == 2:
        best = max(got, key=got.get)
        lines.append(f"    -> {rows[best]} trains {got[best] / min(got.values()):.2f} x the images per dollar "
                     f"(the default InstanceType should follow this figure)")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="CPU smoke check: yolo11n at 64 px, tiny windows")
    p.add_argument("--models", help="comma-separated (default yolo11n.yaml,yolo12s.yaml; --tiny yolo11n.yaml)")
    p.add_argument("--imgsz", type=int)
    p.add_argument("--epochs", type=int, default=1, help="epochs timed (one window each)")
    p.add_argument("--warm", type=int, help="steps before the window (prefetch filled, cudnn tuned)")
    p.add_argument("--window", type=int, help="steps timed")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cores", type=lambda s: [int(x) for x in s.split(",") if x], help="taskset legs (4,8)")
    p.add_argument("--n-train", type=int, help="at least this many images (default: what the prefetch rule needs)")
    p.add_argument("--unique", type=int, help="distinct generated images (the rest hard links)")
    p.add_argument("--n-val", type=int)
    p.add_argument("--work", type=Path, default=Path("/tmp/yoloops-bench"))
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    d = dict(imgsz=64, warm=2, window=4, cores=[1, 2], unique=64, n_val=8) if a.tiny else \
        dict(imgsz=640, warm=30, window=60, cores=[4, 8], unique=2000, n_val=64)
    for k, v in d.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    models = (a.models or ("yolo11n.yaml" if a.tiny else "yolo11n.yaml,yolo12s.yaml")).split(",")
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = [bench_model(a, m) for m in models]
    print("\nimages/s (median of repeats; window of training steps, validation and export excluded)")
    for r in results:
        m, ips = r["model"], r["images_per_s"]
        stem = Path(m).stem
        goal = GOALS.get(stem)
        print(f"  {m}: plain {ips['plain']}, tuned {ips['tuned']}, container {ips['container']}")
        print(f"    settings gain (leg 2 / leg 1) {r['settings_gain']:.2f} x; container overhead (leg 3 / leg 2) "
              f"{r['overhead']:.3f} (goal ~1.0); container vs plain {r['vs_plain']:.2f} x"
              + (f" (goal >= {goal} x: {'met' if r['vs_plain'] >= goal else 'NOT met'})" if goal else ""))
        fs = r["first_step_s"]["container"]
        print(f"    time to first step: container {fs} s (goal <= {FIRST_STEP_GOAL_S} s: "
              f"{'met' if fs <= FIRST_STEP_GOAL_S else 'NOT met'}), plain {r['first_step_s']['plain']} s")
        for line in per_dollar(r["pinned"]):
            print(line)
    print(f"total {time.time() - t0:.0f} s" + ("" if not a.tiny else " (--tiny: a smoke check; goals are for a GPU)"))
    if a.json:
        a.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
