"""The demo recipe (yoloops.synth.DEMO_DATASET + DEMO_HYPERPARAMETERS) really learns, on the CPU, in seconds.

DESIGN.md "Training offline": tests train on a generated dataset that is learnable (mAP rises). This runs
train.py as a subprocess, exactly as the local stack and the demo do, with the recipe unchanged (~30 s).

It must hold on any x86 CPU: float kernels differ between CPUs (AVX-512 or not, Intel or AMD), and from the
same seed a different CPU follows a different training trajectory. With the old recipe (objects 18-38 % of
the image) "square" stayed unlearned on a 2-core AMD EPYC (mAP50-95 0.0025); the recipe now draws objects at
30-50 % (synth.DEMO_DATASET["object_size"]), which every class learns by epoch 4-6 (see synth.py for the
measured figures). No time bound: timings are bench/ figures, not test outcomes, on a shared machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from container_helpers import TRAIN_PY

from yoloops.synth import DEMO_DATASET, DEMO_HYPERPARAMETERS, generate_dataset

EPOCHS = int(DEMO_HYPERPARAMETERS["epochs"])
MIN_FINAL_MAP50 = 0.5  # measured 0.99 (0.00 after epoch 1); other dataset / training seeds 0.85 to 0.99
# per class mAP50-95; measured 0.69-0.76 here, 0.25 at worst over 5 seed trajectories (the old 18-38 %
# objects: 3 of those 5 had a class below 0.1)
MIN_CLASS_MAP = 0.1


@pytest.mark.slow
def test_demo_recipe_map_rises_well_above_zero(tmp_path):
    base = tmp_path / "ml"
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(DEMO_HYPERPARAMETERS))
    generate_dataset(base / "input" / "data" / "train", **DEMO_DATASET)
    env = {k: v for k, v in os.environ.items()
           if k not in {"SM_CHANNEL_TRAIN", "SM_CHANNEL_WEIGHTS", "DATASET_ROOT", "BASE_WEIGHTS", "WANDB_SECRET_ARN"}}
    env.update(SAGEMAKER_BASE_DIR=str(base), YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"),
               MPLCONFIGDIR=str(tmp_path / "mpl"))

    t0 = time.monotonic()
    # ~30 s idle; the generous limit only stops a hung process on a machine shared with other jobs
    proc = subprocess.run([sys.executable, str(TRAIN_PY)], env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - t0

    assert proc.returncode == 0, proc.stderr[-3000:]
    per_epoch = json.loads((base / "checkpoints" / "yoloops-epochs.json").read_text())["records"]  # the ledger
    curve = [round(r["mAP50"], 3) for r in per_epoch]
    assert [r["epoch"] for r in per_epoch] == list(range(1, EPOCHS + 1))
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    print(json.dumps({"mAP50_by_epoch": curve, "mAP50": metrics["mAP50"], "mAP50-95": metrics["mAP50-95"],
                      "per_class_mAP50-95": metrics["per_class_mAP50-95"], "seconds": round(seconds, 1)}))
    assert metrics["mAP50"] > MIN_FINAL_MAP50, f"mAP50 per epoch {curve}, final {metrics['mAP50']}"
    # mAP rises: the final model is far better than after one epoch, not a lucky constant
    assert metrics["mAP50"] > curve[0] + 0.2, curve
    # every class was learned, not only the easiest one (an unlearned class stays near 0)
    assert all(v > MIN_CLASS_MAP for v in metrics["per_class_mAP50-95"].values()), metrics["per_class_mAP50-95"]


def test_train_py_accepts_the_recipe_and_finds_the_tiny_model(train_module, tmp_path):
    """The demo and the workflow tests pass DEMO_HYPERPARAMETERS as-is: every key must be one train.py takes."""
    cfg = train_module.parse_hyperparameters(DEMO_HYPERPARAMETERS)
    assert (cfg.model, cfg.epochs, cfg.imgsz, cfg.batch) == ("yoloops-tiny.yaml", 8, 64, 16)
    assert (cfg.optimizer, cfg.lr0, cfg.warmup_epochs, cfg.mosaic) == ("SGD", 0.05, 0.0, 0.0)
    assert all(isinstance(v, str) for v in DEMO_HYPERPARAMETERS.values())  # hyperparameters.json: strings
    paths = train_module.Paths.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    # shipped next to train.py (in the image: /opt/ml/code), so it resolves offline from any working dir
    resolved = train_module.resolve_model(cfg, paths)
    assert resolved == str(TRAIN_PY.parent / "yoloops-tiny.yaml") and os.path.isfile(resolved)
    # an Ultralytics model name is still passed through for Ultralytics to find in its package
    assert train_module.resolve_model(train_module.parse_hyperparameters({"model": "yolo11n.yaml"}), paths) \
        == "yolo11n.yaml"
