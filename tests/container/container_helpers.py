"""Helpers for the training container tests (imported by name; tests/ is not a package): load train.py (not a package) and lay out a SageMaker base dir."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN_PY = ROOT / "training_container" / "train.py"


def load_train_module():
    """train.py as a module (cached: one copy per test session, like one process in the container)."""
    name = "yoloops_container_train"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TRAIN_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


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
