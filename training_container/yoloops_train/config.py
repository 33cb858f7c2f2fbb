"""The job's inputs: SageMaker paths and typed hyperparameters (hyperparameters.json holds only strings)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from .common import JobFailure
from .storage import scratch_dir


@dataclasses.dataclass(frozen=True)
class Paths:
    base: Path
    hyperparameters: Path
    train: Path
    weights: Path | None
    model: Path
    output: Path
    checkpoints: Path
    work: Path  # scratch (storage.scratch_dir): extracted zips, data.yaml, Ultralytics' run folder; not uploaded

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Paths:
        env = dict(os.environ if env is None else env)
        base = Path(env.get("SAGEMAKER_BASE_DIR") or "/opt/ml")
        data = base / "input" / "data"
        train = env.get("SM_CHANNEL_TRAIN") or env.get("DATASET_ROOT") or str(data / "train")
        weights = env.get("SM_CHANNEL_WEIGHTS") or env.get("BASE_WEIGHTS") or str(data / "weights")
        return cls(
            base=base,
            hyperparameters=base / "input" / "config" / "hyperparameters.json",
            train=Path(train),
            weights=Path(weights),
            model=base / "model",
            output=base / "output",
            checkpoints=Path(env.get("SM_CHECKPOINT_DIR") or base / "checkpoints"),
            work=scratch_dir(base, env),
        )


# ---------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters a job may set. 0 / "auto" = let resolve_throughput() decide from the machine."""

    model: str = "yolo11n.yaml"
    epochs: int = 50
    imgsz: int = 640
    batch: int = 0
    workers: int = -1
    cache: str = "auto"  # auto | ram | disk | none
    amp: str = "auto"  # auto | bf16 | fp16 | fp32
    device: str = "auto"  # auto | cpu | 0 | 0,1
    patience: int = 100
    lr0: float = 0.0  # 0 = Ultralytics' optimizer=auto picks it
    lrf: float = 0.01
    optimizer: str = "auto"
    momentum: float = 0.937
    weight_decay: float = 0.0005
    warmup_epochs: float = 3.0
    close_mosaic: int = 10
    mosaic: float = 1.0
    fliplr: float = 0.5
    seed: int = 0
    cos_lr: bool = False
    plots: bool = False
    compile: bool = False
    export_onnx: bool = False  # accepted for old plans; every job now exports the whole bundle (export.py)
    wandb_project: str = "yoloops"
    dataset_version: str = ""  # recorded in model.json; the plan passes the dataset version it trains on
    base_weights: str = ""  # recorded in model.json (e.g. the S3 key); default: the model file or YAML used
    base_weights_key: str = ""  # the plan's exact S3 key of the base weights: model.json's base_weights when set
    champion_run_id: str = ""  # the champion whose best.pt the plan put in channel `champion` (paired.py)
    # Share of train split off to val (by file-name hash) when the dataset has none: the stack passes its
    # ValFraction so the job splits exactly as the validation report said.
    val_fraction: float = 0.15
    # "probe": report the host (probe.py, `yoloops image probe`) instead of training
    yoloops_mode: str = "train"

    def validate(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be >= 1")
        if self.imgsz < 32 or self.imgsz % 32:
            problems.append(f"imgsz must be a multiple of 32 and >= 32, got {self.imgsz}")
        if self.batch < 0:
            problems.append("batch must be >= 1 (or 0 = sized to the machine)")
        if self.cache not in {"auto", "ram", "disk", "none"}:
            problems.append(f"cache must be auto|ram|disk|none, got {self.cache!r}")
        if self.amp not in {"auto", "bf16", "fp16", "fp32"}:
            problems.append(f"amp must be auto|bf16|fp16|fp32, got {self.amp!r}")
        if self.lr0 < 0 or self.patience < 0 or self.close_mosaic < 0:
            problems.append("lr0, patience and close_mosaic must be >= 0")
        if not 0 <= self.val_fraction <= 0.9:
            problems.append(f"val_fraction must be in [0, 0.9], got {self.val_fraction}")
        if self.yoloops_mode not in {"train", "probe"}:
            problems.append(f"yoloops_mode must be train|probe, got {self.yoloops_mode!r}")
        if not self.model.endswith((".pt", ".yaml", ".yml")):
            problems.append(f"model must name a .pt weights file or a model .yaml, got {self.model!r}")
        if problems:
            raise JobFailure("bad hyperparameters: " + "; ".join(problems))


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _coerce(key: str, raw: Any, typ: type) -> Any:
    value = raw
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':  # the SageMaker SDK JSON-encodes some values
            with contextlib.suppress(ValueError):
                text = json.loads(text)
        value = text
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            low = str(value).lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return int(f)
        if typ is float:
            f = float(value)
            if not math.isfinite(f):
                raise ValueError
            return f
        return str(value)
    except (TypeError, ValueError):
        raise JobFailure(f"bad hyperparameter {key}={raw!r}: expected {typ.__name__}") from None


SAGEMAKER_KEY_PREFIXES = ("sagemaker_", "_tuning_")


def parse_hyperparameters(raw: dict[str, Any]) -> TrainConfig:
    """hyperparameters.json (all strings) -> TrainConfig; unknown or ill-typed keys fail the job."""
    if not isinstance(raw, dict):
        raise JobFailure("hyperparameters.json must hold a JSON object")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    types = {"int": int, "float": float, "bool": bool, "str": str}
    # SageMaker's own keys: sagemaker_* (SDK), and _tuning_objective_metric & kin that a hyperparameter tuning
    # job adds to each of its training jobs.
    unknown = sorted(k for k in raw if k not in fields and not k.startswith(SAGEMAKER_KEY_PREFIXES))
    if unknown:
        raise JobFailure(f"unknown hyperparameter(s) {unknown}; allowed: {sorted(fields)}")
    values = {k: _coerce(k, v, types[str(fields[k].type)]) for k, v in raw.items() if k in fields}
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg


def load_config(paths: Paths) -> TrainConfig:
    if not paths.hyperparameters.exists():
        return parse_hyperparameters({})
    try:
        raw = json.loads(paths.hyperparameters.read_text() or "{}")
    except ValueError as e:
        raise JobFailure(f"hyperparameters.json is not valid JSON: {e}") from None
    return parse_hyperparameters(raw)


def resolve_model(cfg: TrainConfig, paths: Paths) -> str:
    if cfg.model.endswith((".yaml", ".yml")):
        # a model YAML shipped next to this file (yoloops-tiny.yaml), else one of Ultralytics' own: offline
        here = Path(__file__).resolve().parents[1] / cfg.model
        return str(here) if "/" not in cfg.model and here.is_file() else cfg.model
    w = paths.weights
    if w is not None and w.is_file() and w.suffix == ".pt":
        return str(w)
    if w is not None and w.is_dir():
        named = w / Path(cfg.model).name
        if named.exists():
            return str(named)
        pts = sorted(w.rglob("*.pt"))
        if len(pts) == 1:
            return str(pts[0])
    if Path(cfg.model).is_file():
        return cfg.model
    raise JobFailure(f"model {cfg.model!r} not found in the weights channel ({w}); the container is offline: "
                     "provide the .pt in the 'weights' channel or use a model YAML such as yolo11n.yaml")
