"""Helpers for the training container tests (imported by name; tests/ is not a package): the trainer package and a SageMaker base dir."""

from __future__ import annotations

import importlib
import json
import os
import pickle
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


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poison(root: Path, marker: Path) -> list[Path]:
    """Pickled caches wherever Ultralytics could look for one: beside every labels folder of every layout,
    as `labels.cache`, `<split>.cache` and `train.cache`, plus .npy/.pt/.pkl files next to images."""
    planted = []
    for labels in [p for p in root.rglob("labels") if p.is_dir()] + [p for p in root.rglob("*") if p.is_dir()
                                                                     and p.parent.name == "labels"]:
        for cache in (labels.with_suffix(".cache"), labels.parent / "train.cache", labels / "train.cache"):
            cache.write_bytes(pickle.dumps(Payload(marker)))
            planted.append(cache)
    for image in list(root.rglob("*.jpg"))[:2]:
        for suffix in (".npy", ".pkl", ".pt"):
            image.with_suffix(suffix).write_bytes(pickle.dumps(Payload(marker)))
    return planted
