"""Helpers for the training container tests (imported by name; tests/ is not a package): the trainer package and a SageMaker base dir."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN_PY = ROOT / "training_container" / "train.py"


def load_train_module():
    """The yoloops_train package train.py runs (conftest puts training_container/ on sys.path, as Python does
    for `python training_container/train.py`)."""
    return importlib.import_module("yoloops_train")


def make_base(base: Path, hyperparameters: dict[str, str], n_train: int = 24, n_val: int = 12,
              imgsz: int = 64, layout: str = "ultralytics", seed: int = 0) -> Path:
    """A /opt/ml-style dir: hyperparameters.json + a generated dataset in the train channel."""
    from yoloops.synth import generate_dataset

    cfg = base / "input" / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    generate_dataset(base / "input" / "data" / "train", n_train=n_train, n_val=n_val, imgsz=imgsz,
                     layout=layout, seed=seed)
    return base
