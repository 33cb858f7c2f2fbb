#!/usr/bin/env python3
"""The data pipeline alone (decode, augment, collate) on the CPU: the container's settings against plain defaults.

    python bench/bench_data_pipeline.py                 # 640 px, 2 repeats of each leg
    python bench/bench_data_pipeline.py --imgsz 320     # lighter

No model, no GPU: Ultralytics' own train dataset (mosaic and the other default augmentations) and its
InfiniteDataLoader, built as its trainer builds them (data/build.py), each leg in its own process, the legs
interleaved and repeated. Timed: `--batches` batches after `--warm` (the prefetch filled), in images/s per
core (the cores this process may use). The dataset spans at least 10 x the larger leg's prefetch (workers x 4
batches). Legs:
  plain      Ultralytics' defaults: batch 16, 8 workers (capped at the CPUs), no cache;
  container  what training_container/yoloops_train/throughput.py resolves for a one-GPU host with this
             machine's CPUs, RAM and /dev/shm (workers = CPUs - 1, RAM cache when it fits, batch sized to the
             GPU; --gpu-mem-gb says which GPU, 24 = the A10G of ml.g5).
The RAM cache is filled when the dataset is built (before the first batch): its time is printed, not timed.
Goal: container >= 2 x plain per core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PREFETCH = 4
GOAL = 2.0

LEG = r"""
import json, os, sys, time
T0 = time.time()
os.environ.setdefault("YOLO_OFFLINE", "1")
from ultralytics.cfg import get_cfg
from ultralytics.data import build_dataloader, build_yolo_dataset
img_dir, names, imgsz, batch, workers, cache, warm, n = sys.argv[1:9]
cfg = get_cfg(overrides={"imgsz": int(imgsz), "cache": json.loads(cache), "batch": int(batch)})
data = {"names": dict(enumerate(json.loads(names))), "nc": len(json.loads(names)), "channels": 3}
t = time.time()
ds = build_yolo_dataset(cfg, img_dir, int(batch), data, mode="train", stride=32)
built = time.time() - t
loader = build_dataloader(ds, int(batch), int(workers), shuffle=True, rank=-1, device="cpu")
it = iter(loader)
for _ in range(int(warm)):
    next(it)
t = time.perf_counter()
images = 0
for _ in range(int(n)):
    images += len(next(it)["im_file"])
dt = time.perf_counter() - t
print("LEG " + json.dumps({"images_per_s": images / dt, "cores": len(os.sched_getaffinity(0)),
      "workers": loader.num_workers, "batch": int(batch), "cache": json.loads(cache), "build_s": built}), flush=True)
os._exit(0)
"""


def settings(a) -> dict[str, dict]:
    sys.path.insert(0, str(ROOT / "training_container"))
    import dataclasses

    from yoloops_train.config import parse_hyperparameters
    from yoloops_train.throughput import detect_machine, resolve_throughput

    m = dataclasses.replace(detect_machine(), gpu_count=1, gpu_mem_gb=a.gpu_mem_gb, bf16=True)
    cfg = parse_hyperparameters({"model": a.model, "imgsz": str(a.imgsz)})
    c = resolve_throughput(cfg, m, a.n_train, a.n_train * 3 * a.imgsz * a.imgsz // 20)
    return {"plain": {"batch": 16, "workers": 8, "cache": False},
            "container": {"batch": c["batch"], "workers": c["workers"], "cache": c["cache"]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--model", default="yolo11n.yaml", help="sets the container's batch (its scale)")
    p.add_argument("--gpu-mem-gb", type=float, default=24.0)
    p.add_argument("--n-train", type=int, default=0, help="default: 10 x the larger prefetch")
    p.add_argument("--unique", type=int, default=200)
    p.add_argument("--warm", type=int, default=0, help="batches before timing (default: one prefetch round)")
    p.add_argument("--batches", type=int, default=0, help="batches timed (default: ~2 prefetch rounds)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/tmp/yoloops-bench-data"))
    a = p.parse_args(argv)
    cpus = len(os.sched_getaffinity(0))
    a.n_train = a.n_train or 10**6
    legs = settings(a)
    prefetch = {k: TRAIN_PREFETCH * min(cpus, v["workers"]) * v["batch"] for k, v in legs.items()}
    n = a.n_train if a.n_train != 10**6 else max(10 * max(prefetch.values()), 64)
    a.n_train = n
    legs = settings(a)  # the cache decision depends on the dataset's size
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_train_bench import make_dataset

    a.work.mkdir(parents=True, exist_ok=True)
    ds = make_dataset(argparse.Namespace(work=a.work, imgsz=a.imgsz, unique=a.unique, n_val=8), n)
    names = json.dumps(["circle", "square", "triangle"])
    print(f"{n} train images at {a.imgsz} px ({a.unique} unique), {cpus} cores; legs {json.dumps(legs)}", flush=True)
    results: dict[str, list[dict]] = {k: [] for k in legs}
    order = list(legs)
    for rep in range(a.repeats):
        for leg in order[rep % 2:] + order[:rep % 2]:
            s = legs[leg]
            per_round = max(1, min(cpus, s["workers"]) * TRAIN_PREFETCH)
            warm = a.warm or per_round
            timed = a.batches or max(8, 2 * per_round)
            if (warm + timed) * s["batch"] > n:
                timed = max(1, n // s["batch"] - warm)
            out = subprocess.run([sys.executable, "-c", LEG, str(ds / "images" / "train"), names, str(a.imgsz),
                                  str(s["batch"]), str(s["workers"]), json.dumps(s["cache"]), str(warm), str(timed)],
                                 capture_output=True, text=True, env={**os.environ,
                                                                      "YOLO_CONFIG_DIR": str(a.work / "cfg")})
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("LEG ")), None)
            if line is None:
                sys.stderr.write(out.stderr[-3000:])
                raise SystemExit(f"leg {leg} failed")
            r = json.loads(line[4:])
            r["per_core"] = r["images_per_s"] / r["cores"]
            # the container keeps a core for the training loop (workers = CPUs - 1): per loader process too
            r["per_worker"] = r["images_per_s"] / max(1, r["workers"])
            results[leg].append(r)
            print(f"  {leg:9s} rep {rep + 1}: {r['images_per_s']:7.1f} img/s = {r['per_core']:6.1f} per core "
                  f"(batch {r['batch']}, workers {r['workers']}, cache {r['cache']}, built in {r['build_s']:.1f} s)",
                  flush=True)
    med = {k: statistics.median(r["per_core"] for r in v) for k, v in results.items()}
    per_worker = {k: statistics.median(r["per_worker"] for r in v) for k, v in results.items()}
    ratio = med["container"] / med["plain"]
    print(f"images/s per core (median): plain {med['plain']:.1f}, container {med['container']:.1f}: "
          f"{ratio:.2f} x (goal >= {GOAL} x: {'met' if ratio >= GOAL else 'NOT met'})")
    print(f"images/s per loader worker (median): plain {per_worker['plain']:.1f}, container "
          f"{per_worker['container']:.1f}: {per_worker['container'] / per_worker['plain']:.2f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
