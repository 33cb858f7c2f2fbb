"""What the champion's paired evaluation adds to a training job, as a share of a 50-epoch job (issue 16 item 8).

On one generated dataset (yoloops.synth, a val split of --n-val images and a test split of --n-test):
1. trains the model for --epochs with the job's settings (Ultralytics, validation every epoch as in the job)
   and takes the seconds per epoch (training + that epoch's validation);
2. runs the job's paired evaluation (yoloops_train.paired.evaluate_pair) of that model against a champion
   (the same architecture trained one epoch less, in the champion channel's place) on val and test;
3. prints the champion's seconds (load + remapped label view + validation on both splits), the challenger's
   extra seconds, and each as a share of 50 x the measured epoch: the 50-epoch job is EXTRAPOLATED from the
   measured epochs, not run.

    python bench/bench_paired_eval.py                       # CPU: tiny model, 64 px, 512/64/64 images
    python bench/bench_paired_eval.py --model yolo11n.yaml --imgsz 640 --n-train 2000 --device 0   # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "training_container"), str(ROOT)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="yoloops-tiny.yaml")
    p.add_argument("--imgsz", type=int, default=64)
    p.add_argument("--n-train", type=int, default=512)
    p.add_argument("--n-val", type=int, default=64)
    p.add_argument("--n-test", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4, help="epochs actually trained to measure one epoch")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--job-epochs", type=int, default=50)
    a = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-paired-"))
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp / "ucfg"))
    from yoloops_train.dataset import prepare_dataset
    from yoloops_train.offline import make_offline, patch_ultralytics

    make_offline(Path(os.environ["YOLO_CONFIG_DIR"]))
    patch_ultralytics(Path(os.environ["YOLO_CONFIG_DIR"]))
    from ultralytics import YOLO
    from yoloops_train.paired import evaluate_pair

    from yoloops.synth import generate_dataset

    generate_dataset(tmp / "upload", n_train=a.n_train, n_val=a.n_val, n_test=a.n_test, imgsz=a.imgsz, seed=0)
    ds = prepare_dataset(tmp / "upload", tmp / "work")
    model = str(ROOT / "training_container" / a.model) if (ROOT / "training_container" / a.model).exists() \
        else a.model
    common = dict(data=str(ds.yaml_path), imgsz=a.imgsz, batch=a.batch, device=a.device, workers=0 if
                  a.device == "cpu" else 8, optimizer="SGD", lr0=0.05, warmup_epochs=0, mosaic=0, close_mosaic=0,
                  plots=False, verbose=False, exist_ok=True, project=str(tmp))
    YOLO(model).train(epochs=1, name="champion", **common)
    champion_dir = tmp / "champion-channel"
    champion_dir.mkdir()
    (tmp / "champion" / "weights" / "last.pt").rename(champion_dir / "best.pt")
    t0 = time.perf_counter()
    YOLO(model).train(epochs=a.epochs, name="challenger", **common)
    wall_epoch_s = (time.perf_counter() - t0) / a.epochs  # with model build, dataset scan and final_eval
    # steady state from Ultralytics' own clock (results.csv `time`, cumulative per epoch: training + that epoch's
    # validation): leaves the one-off start-up out, so the share below errs on the high side
    times = [float(r.split(",")[1]) for r in (tmp / "challenger" / "results.csv").read_text().splitlines()[1:]]
    epoch_s = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else times[0]
    best = tmp / "challenger" / "weights" / "best.pt"

    t0 = time.perf_counter()
    out = evaluate_pair(best, ds.yaml_path, ds.tree, ds.names, tmp / "work", imgsz=a.imgsz, batch=a.batch,
                        device=a.device, champion_dir=champion_dir, champion_run_id="bench")
    paired_s = time.perf_counter() - t0
    champ_s = out["evaluation"]["champion"]["seconds"]
    job_s = a.job_epochs * epoch_s
    figures = {
        "device": a.device, "model": a.model, "imgsz": a.imgsz, "train_images": a.n_train,
        "val_images": a.n_val, "test_images": a.n_test, "epochs_measured": a.epochs,
        "epoch_s (steady state)": round(epoch_s, 3), "epoch_s (wall, incl. start-up)": round(wall_epoch_s, 3), f"job_{a.job_epochs}_epochs_s (extrapolated)": round(job_s, 1),
        "champion_paired_eval_s": round(champ_s, 2), "champion_share_pct": round(100 * champ_s / job_s, 2),
        "paired_eval_total_s (challenger + champion, val + test)": round(paired_s, 2),
        "paired_eval_total_share_pct": round(100 * paired_s / job_s, 2), "goal_pct": 3.0,
    }
    for k, v in figures.items():
        print(f"{k:>58}: {v}")
    print(json.dumps(figures))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
