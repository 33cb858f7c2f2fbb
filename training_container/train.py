#!/usr/bin/env python3
"""SageMaker training entrypoint: train an Ultralytics YOLO detector under the SageMaker container contract.

Contract (see training_container/README.md):
  <base> = $SAGEMAKER_BASE_DIR or /opt/ml
  in : <base>/input/config/hyperparameters.json (all strings), channel `train` ($SM_CHANNEL_TRAIN or
       $DATASET_ROOT; a dataset dir or a single .zip), optional channel `weights` ($SM_CHANNEL_WEIGHTS or
       $BASE_WEIGHTS), <base>/checkpoints (spot checkpoints, synced to S3 by SageMaker)
  out: <base>/model/{best.pt,metrics.json,results.csv,args.yaml[,model.onnx]} on success;
       <base>/output/failure (one line) and a non-zero exit on failure;
       stdout lines `yoloops-metric epoch=.. mAP50=..` matched by the job's MetricDefinitions.

Standalone on purpose: the image ships Ultralytics, not yoloops_core. Ultralytics is imported only after the
environment is made offline (YOLO_OFFLINE and the settings dir must be set before its first import).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

PROCESS_START = time.time()

# --- metric lines: a copy of yoloops_core.metrics.format_metric_line (the image doesn't ship yoloops_core;
# tests/container asserts METRIC_DEFINITIONS' regexes match what this prints).
METRIC_PREFIX = "yoloops-metric"
METRIC_NAMES = ("epoch", "mAP50", "mAP50-95", "precision", "recall", "box_loss", "images_per_s")


def format_metric_line(values: dict[str, float | int]) -> str:
    parts = [f"{n}={values[n]:.6g}" if isinstance(values[n], float) else f"{n}={values[n]}"
             for n in METRIC_NAMES if n in values]
    return " ".join([METRIC_PREFIX, *parts])


def emit(line: str) -> None:
    print(line, flush=True)


class JobFailure(Exception):
    """A failure with a reason a user can act on; becomes the one line in <base>/output/failure."""


class Terminated(Exception):
    """SIGTERM (spot reclaim / StopTrainingJob) arrived."""


# ----------------------------------------------------------------------------------------------- paths
@dataclasses.dataclass(frozen=True)
class Paths:
    base: Path
    hyperparameters: Path
    train: Path
    weights: Path | None
    model: Path
    output: Path
    checkpoints: Path
    work: Path  # scratch: extracted zip datasets, rewritten data.yaml (not uploaded by SageMaker)

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
            work=base / "work",
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
    export_onnx: bool = False
    wandb_project: str = "yoloops"

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


def parse_hyperparameters(raw: dict[str, Any]) -> TrainConfig:
    """hyperparameters.json (all strings) -> TrainConfig; unknown or ill-typed keys fail the job."""
    if not isinstance(raw, dict):
        raise JobFailure("hyperparameters.json must hold a JSON object")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    types = {"int": int, "float": float, "bool": bool, "str": str}
    unknown = sorted(k for k in raw if k not in fields and not k.startswith("sagemaker_"))
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


# --------------------------------------------------------------------------------------------- dataset
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".dng", ".mpo", ".pfm", ".heic"}


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a zip, refusing members that would land outside dest (zip-slip)."""
    dest = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                target = (dest / member.filename).resolve()
                if not target.is_relative_to(dest):
                    raise JobFailure(f"dataset zip {archive.name} has an unsafe member path {member.filename!r}")
            zf.extractall(dest)
    except zipfile.BadZipFile as e:
        raise JobFailure(f"dataset zip {archive.name} is not a valid zip: {e}") from None


def _find_yaml(root: Path) -> tuple[Path, dict]:
    import yaml

    found = []
    for p in sorted(root.rglob("*.y*ml")):
        if any(part.startswith((".", "__MACOSX")) for part in p.relative_to(root).parts):
            continue
        try:
            data = yaml.safe_load(p.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and {"train", "val", "names"} <= set(data):
            # data.yaml first, then the shallowest
            found.append(((p.name != "data.yaml", len(p.relative_to(root).parts), str(p)), p, data))
    if not found:
        raise JobFailure(f"no dataset YAML with train/val/names keys found in the train channel ({root})")
    _, path, data = min(found, key=lambda t: t[0])
    return path, data


def _resolve_split(value: str, roots: list[Path], split: str) -> str:
    candidates = [Path(value)] if Path(value).is_absolute() else []
    rel = value
    for r in roots:
        candidates.append(r / value)
    while rel.startswith("../"):  # Roboflow writes ../train/images relative to the YAML's folder
        rel = rel[3:]
        candidates.extend(r / rel for r in roots)
    for c in candidates:
        if c.exists():
            return str(c.resolve())
    raise JobFailure(f"dataset split {split!r} path {value!r} not found in the dataset")


def _count_images(p: Path) -> int:
    if p.is_file() and p.suffix == ".txt":  # a list of image paths
        return sum(1 for line in p.read_text().splitlines() if line.strip())
    if p.is_file():
        return 1 if p.suffix.lower() in IMAGE_SUFFIXES else 0
    return sum(1 for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)


@dataclasses.dataclass
class PreparedDataset:
    yaml_path: Path
    root: Path
    names: list[str]
    n_train: int
    n_val: int
    bytes_train: int
    label_dirs: list[Path]


def prepare_dataset(channel: Path, work: Path) -> PreparedDataset:
    """Find the dataset YAML in the channel, point its paths at the channel, write the copy under work/."""
    import yaml

    if not channel.exists():
        raise JobFailure(f"train channel {channel} does not exist")
    root = channel
    entries = [p for p in channel.iterdir() if not p.name.startswith(".")] if channel.is_dir() else [channel]
    zips = [p for p in entries if p.is_file() and p.suffix.lower() == ".zip"]
    if len(entries) == 1 and zips:  # datasets/<name>/<version>.zip arrives as-is: extract it here
        root = work / "dataset"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _safe_extract(zips[0], root)
    yaml_path, data = _find_yaml(root)
    names = data["names"]
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise JobFailure(f"dataset YAML {yaml_path.name}: names must be a non-empty list or mapping")
    if "nc" in data and int(data["nc"]) != len(names):
        raise JobFailure(f"dataset YAML {yaml_path.name}: nc={data['nc']} but {len(names)} names")
    roots = [yaml_path.parent]
    declared = data.get("path")
    if declared:
        d = Path(str(declared))
        d = d if d.is_absolute() else yaml_path.parent / d
        if d.exists():
            roots.insert(0, d)
    out = {k: v for k, v in data.items() if k not in {"download", "path"}}  # never download anything
    counts = {}
    for split in ("train", "val", "test"):
        if not data.get(split):
            continue
        vals = data[split] if isinstance(data[split], list) else [data[split]]
        resolved = [_resolve_split(str(v), roots, split) for v in vals]
        counts[split] = sum(_count_images(Path(r)) for r in resolved)
        if split in {"train", "val"} and counts[split] == 0:
            raise JobFailure(f"dataset split {split!r} ({vals}) has no images")
        out[split] = resolved if isinstance(data[split], list) else resolved[0]
    out["path"] = str(yaml_path.parent.resolve())
    out["names"] = dict(enumerate(names))
    out["nc"] = len(names)
    work.mkdir(parents=True, exist_ok=True)
    dest = work / "data.yaml"
    dest.write_text(yaml.safe_dump(out, sort_keys=False))
    train_dirs = [Path(p) for p in (out["train"] if isinstance(out["train"], list) else [out["train"]])]
    size = sum(f.stat().st_size for d in train_dirs if d.is_dir() for f in d.rglob("*")
               if f.suffix.lower() in IMAGE_SUFFIXES)
    label_dirs = []
    for split in ("train", "val"):
        for p in out[split] if isinstance(out[split], list) else [out[split]]:
            s = str(p)
            if "/images" in s:  # Ultralytics maps .../images/... -> .../labels/... for label files
                label_dirs.append(Path("/labels".join(s.rsplit("/images", 1))))
    return PreparedDataset(dest, yaml_path.parent, names, counts.get("train", 0), counts.get("val", 0),
                           size, label_dirs)


# ------------------------------------------------------------------------------------------ throughput
@dataclasses.dataclass(frozen=True)
class Machine:
    cpus: int
    gpu_count: int
    gpu_mem_gb: float  # per GPU; 0 without a GPU
    bf16: bool
    available_ram_bytes: int


def detect_machine() -> Machine:
    import torch

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        cpus = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mem = torch.cuda.get_device_properties(0).total_memory / 2**30 if gpus else 0.0
    bf16 = bool(gpus and torch.cuda.is_bf16_supported())
    try:
        import psutil

        avail = psutil.virtual_memory().available
    except ImportError:  # pragma: no cover
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return Machine(cpus, gpus, mem, bf16, avail)


# Images per batch that fit comfortably at 640 px on an 80 GB GPU, per model scale (bf16/AMP training).
# Scaled linearly by memory and by pixel count; measured on H200: n=128 / s=64 reached the eager-step limit.
_BATCH_AT_640_80GB = {"n": 128, "s": 64, "m": 40, "l": 24, "x": 16}


def _model_scale(model: str) -> str:
    stem = Path(model).stem.lower()
    for s in "nsmlx":
        if stem.endswith(s) or f"{s}-" in stem[-4:]:
            return s
    return "s"


def resolve_throughput(cfg: TrainConfig, machine: Machine, n_train: int, train_bytes: int) -> dict[str, Any]:
    """Every speed decision in one place: device, batch, workers, cache, amp (explicit hyperparameters win).

    Measured (issue 4): Ultralytics defaults (batch 16, 8 workers, no cache, AMP-check) keep an H200 20-30%
    busy; batch sized to memory + all CPUs as workers + RAM cache + bf16 gives ~4x the images/s.
    """
    gpu = machine.gpu_count > 0 and cfg.device != "cpu"
    device = cfg.device if cfg.device != "auto" else ("0" if gpu else "cpu")
    if cfg.batch:
        batch = cfg.batch
    elif gpu:
        per = _BATCH_AT_640_80GB[_model_scale(cfg.model)] * machine.gpu_mem_gb / 80 * (640 / cfg.imgsz) ** 2
        batch = 2 ** int(math.log2(max(8, min(per, 512))))
        # keep >= ~8 optimizer steps per epoch on small datasets
        batch = max(8, min(batch, 2 ** int(math.log2(max(8, n_train // 8)))))
    else:
        batch = max(2, min(16, 2 ** int(math.log2(max(2, n_train // 4)))))
    if cfg.workers >= 0:
        workers = cfg.workers
    elif gpu:
        workers = max(1, min(32, machine.cpus - 1))  # one core left for the training loop itself
    else:
        workers = 0  # Ultralytics forces 0 on CPU anyway: the model, not loading, is the bottleneck
    if cfg.cache != "auto":
        cache: Any = False if cfg.cache == "none" else cfg.cache
    else:
        # decoded, resized uint8 images ~ imgsz^2 * 3 each (JPEG bytes are far smaller), need 2x headroom
        decoded = n_train * cfg.imgsz * cfg.imgsz * 3
        cache = "ram" if decoded * 2 < machine.available_ram_bytes else False
    if cfg.amp != "auto":
        amp: Any = {"bf16": "bf16", "fp16": True, "fp32": False}[cfg.amp]
    elif gpu:
        amp = "bf16" if machine.bf16 else True
    else:
        amp = False
    # deterministic algorithms cost GPU speed; on CPU they are free and make tests reproducible
    return {"device": device, "batch": int(batch), "workers": int(workers), "cache": cache, "amp": amp,
            "deterministic": not gpu}


# ------------------------------------------------------------------------------------------- offline
def make_offline(config_dir: Path) -> None:
    """Before the first `import ultralytics`: no hub, no telemetry, no update checks, no downloads."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("MPLCONFIGDIR", str(config_dir / "matplotlib"))
    for k in ("WANDB_MODE",):
        os.environ.pop(k, None)


def patch_ultralytics(settings_dirs: Path) -> None:
    """After import: settings without integrations, and no font / AMP-check downloads."""
    import ultralytics.utils as uu
    import ultralytics.utils.checks as checks
    from ultralytics import settings

    integrations = {k: False for k in ("sync", "hub", "clearml", "comet", "dvc", "mlflow", "neptune", "raytune",
                                       "tensorboard", "wandb", "vscode_msg", "openvino_msg") if k in settings}
    dirs = {"runs_dir": str(settings_dirs / "runs"), "weights_dir": str(settings_dirs / "weights"),
            "datasets_dir": str(settings_dirs / "datasets")}
    if any(settings.get(k) != v for k, v in {**integrations, **dirs}.items()):
        settings.update({**integrations, **dirs})
    uu.ONLINE = checks.ONLINE = False

    def offline_font(font: str = "Arial.ttf"):
        """Ultralytics' check_font downloads a missing font; the image bakes fonts into YOLO_CONFIG_DIR."""
        name = Path(font).name
        for d in (uu.USER_CONFIG_DIR, Path(os.environ.get("YOLO_CONFIG_DIR", "/nonexistent"))):
            if (Path(d) / name).exists():
                return Path(d) / name
        from matplotlib import font_manager

        return font_manager.findfont("DejaVu Sans")  # ships with matplotlib: plots still render

    def offline_check_amp(model) -> bool:
        """The stock check downloads yolo26n.pt; keep only its GPU blocklist."""
        import re

        import torch

        dev = next(model.parameters()).device
        if dev.type != "cuda":
            return False
        name = torch.cuda.get_device_name(dev)
        return not re.search(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|"
                             r"t2000|k40m)", name, re.IGNORECASE)

    import ultralytics.data.utils as du
    import ultralytics.engine.trainer as tr
    import ultralytics.utils.plotting as up

    for mod in (checks, du, up):
        mod.check_font = offline_font
    tr.check_amp = offline_check_amp


# ------------------------------------------------------------------------------------------------ W&B
class WandbRun:
    """Optional W&B mirror; every failure is a warning, never a training failure."""

    def __init__(self, ckpt_dir: Path, project: str, config: dict):
        self.run = None
        arn = os.environ.get("WANDB_SECRET_ARN")
        if not arn:
            return
        try:
            key = self._read_key(arn)
            import wandb  # optional in the image

            id_file = ckpt_dir / "wandb_run_id"
            run_id = id_file.read_text().strip() if id_file.exists() else wandb.util.generate_id()
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id)
            os.environ["WANDB_API_KEY"] = key
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", project), id=run_id, resume="allow",
                                  config=config, settings=wandb.Settings(init_timeout=60))
            log(f"W&B run {run_id} (resumes with the checkpoint dir)")
        except Exception as e:
            log(f"WARNING W&B disabled, training continues: {type(e).__name__}: {e}")
            self.run = None

    @staticmethod
    def _read_key(arn: str) -> str:
        import boto3

        secret = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            obj = json.loads(secret)
            return str(obj.get("api_key") or obj.get("WANDB_API_KEY") or obj.get("key"))
        return secret.strip()

    def log(self, data: dict, step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log(data, step=step)
        except Exception as e:
            log(f"WARNING W&B log failed: {e}")

    def finish(self, summary: dict | None = None) -> None:
        if self.run is None:
            return
        try:
            if summary:
                self.run.summary.update(summary)
            self.run.finish()
        except Exception as e:
            log(f"WARNING W&B finish failed: {e}")


def log(msg: str) -> None:
    print(f"[yoloops] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- checkpoints
DONE_MARKER = "yoloops-done.json"
EPOCH_LOG = "yoloops-epochs.jsonl"


def checkpoint_state(last: Path) -> tuple[str, dict]:
    """('none'|'resumable'|'finished'|'corrupt', checkpoint dict or {})."""
    if not last.exists():
        return "none", {}
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        epoch = int(ckpt.get("epoch", -1))
        epochs = int((ckpt.get("train_args") or {}).get("epochs", 0))
    except Exception as e:
        log(f"WARNING unreadable checkpoint {last}: {e}")
        return "corrupt", {}
    # final_eval strips the optimizer from a finished run; epoch+1 >= epochs covers a kill right after the last save
    if ckpt.get("optimizer") is None or epoch + 1 >= epochs:
        return "finished", ckpt
    return "resumable", ckpt


class _Signals:
    def __init__(self):
        self.terminated = False
        self.critical = 0

    def handler(self, signum, frame):
        self.terminated = True
        log("SIGTERM: stopping; the last completed epoch's checkpoint is kept")
        if not self.critical:
            raise Terminated()

    def check(self):
        if self.terminated and not self.critical:
            raise Terminated()


def _trainer_class(sig: _Signals):
    from ultralytics.models.yolo.detect import DetectionTrainer

    class Trainer(DetectionTrainer):
        """Checkpoints at <ckpt>/last.pt, written atomically, never interrupted by SIGTERM."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            with contextlib.suppress(OSError):
                self.wdir.rmdir()
            self.wdir = self.save_dir
            self.last, self.best = self.wdir / "last.pt", self.wdir / "best.pt"

        def save_model(self):
            sig.critical += 1
            last, best = self.last, self.best
            self.last, self.best = last.with_suffix(".pt.partial"), best.with_suffix(".pt.partial")
            try:
                ok = super().save_model()
                for tmp, final in ((self.last, last), (self.best, best)):
                    if tmp.exists():
                        os.replace(tmp, final)  # a kill -9 mid-write leaves the previous last.pt intact
                return ok
            finally:
                self.last, self.best = last, best
                sig.critical -= 1

    return Trainer


# --------------------------------------------------------------------------------------------- training
def _float(d: dict, *keys: str) -> float:
    for k in keys:
        if k in d and d[k] is not None:
            return float(d[k])
    return 0.0


def _metric_values(metrics: dict) -> dict[str, float]:
    return {
        "mAP50": _float(metrics, "metrics/mAP50(B)"),
        "mAP50-95": _float(metrics, "metrics/mAP50-95(B)"),
        "precision": _float(metrics, "metrics/precision(B)"),
        "recall": _float(metrics, "metrics/recall(B)"),
    }


def _resolve_model(cfg: TrainConfig, paths: Paths) -> str:
    if cfg.model.endswith((".yaml", ".yml")):
        # a model YAML shipped next to this file (yoloops-tiny.yaml), else one of Ultralytics' own: offline
        here = Path(__file__).resolve().parent / cfg.model
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


def _restore_label_caches(ds: PreparedDataset, store: Path) -> None:
    for d in ds.label_dirs:
        saved = store / (str(d.with_suffix(".cache")).strip("/").replace("/", "__"))
        target = d.with_suffix(".cache")
        if saved.exists() and not target.exists():
            with contextlib.suppress(OSError):
                shutil.copy2(saved, target)


def _save_label_caches(ds: PreparedDataset, store: Path) -> None:
    """Label scans cost seconds per 1k images: keep them with the checkpoints so a restarted job skips them."""
    for d in ds.label_dirs:
        src = d.with_suffix(".cache")
        if src.exists():
            store.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy2(src, store / (str(src).strip("/").replace("/", "__")))


def _per_class(validator_metrics, names: list[str]) -> dict[str, float]:
    try:
        maps = list(validator_metrics.box.maps)
    except AttributeError:
        return {}
    return {str(n): round(float(maps[i]), 6) for i, n in enumerate(names) if i < len(maps)}


def _read_epoch_log(ckpt_dir: Path) -> list[dict]:
    f = ckpt_dir / EPOCH_LOG
    if not f.exists():
        return []
    rows = {}
    for line in f.read_text().splitlines():
        with contextlib.suppress(ValueError):
            r = json.loads(line)
            rows[r["epoch"]] = r  # a redone epoch (after a kill) replaces its earlier row
    return [rows[k] for k in sorted(rows)]


def write_outputs(paths: Paths, cfg: TrainConfig, final: dict[str, float], per_class: dict[str, float],
                  extra: dict[str, Any]) -> dict:
    ckpt = paths.checkpoints
    paths.model.mkdir(parents=True, exist_ok=True)
    best = ckpt / "best.pt" if (ckpt / "best.pt").exists() else ckpt / "last.pt"
    shutil.copy2(best, paths.model / "best.pt")
    for name in ("results.csv", "args.yaml"):
        if (ckpt / name).exists():
            shutil.copy2(ckpt / name, paths.model / name)
    epochs = _read_epoch_log(ckpt)
    rates = [r["images_per_s"] for r in epochs if r.get("images_per_s")]
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
        **extra,
    }
    (paths.model / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if cfg.export_onnx:
        import importlib.util

        from ultralytics import YOLO

        # simplify needs onnxslim + onnxruntime; without them Ultralytics would try to pip-install them (offline)
        simplify = all(importlib.util.find_spec(m) for m in ("onnxslim", "onnxruntime"))
        exported = YOLO(str(paths.model / "best.pt")).export(format="onnx", imgsz=cfg.imgsz, device="cpu",
                                                              simplify=simplify)
        shutil.move(str(exported), paths.model / "model.onnx")
    (ckpt / DONE_MARKER).write_text(json.dumps({"finished_at": time.time(), "metrics": final}))
    return metrics


def train(paths: Paths, cfg: TrainConfig, sig: _Signals) -> dict:
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    # The image sets YOLO_CONFIG_DIR (fonts baked in); local runs get a stable per-machine dir.
    config_dir = Path(os.environ.get("YOLO_CONFIG_DIR") or Path(tempfile.gettempdir()) / "yoloops-ultralytics")
    make_offline(config_dir)
    ds = prepare_dataset(paths.train, paths.work)
    log(f"dataset {ds.root}: {ds.n_train} train / {ds.n_val} val images, classes {ds.names}")
    if cfg.export_onnx:
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise JobFailure("export_onnx=true but the onnx package is not installed in this image") from None

    patch_ultralytics(config_dir)
    machine = detect_machine()
    speed = resolve_throughput(cfg, machine, ds.n_train, ds.bytes_train)
    log(f"machine {machine}; throughput settings {speed}")
    cache_store = paths.checkpoints / "label_cache"
    _restore_label_caches(ds, cache_store)

    last = paths.checkpoints / "last.pt"
    state, _ckpt = ("finished", {}) if (paths.checkpoints / DONE_MARKER).exists() else checkpoint_state(last)
    if state == "corrupt":
        last.rename(last.with_suffix(".pt.corrupt"))
        state = "none"
    wandb = WandbRun(paths.checkpoints, cfg.wandb_project, dataclasses.asdict(cfg))
    first_step: dict[str, float] = {}
    try:
        if state == "finished":
            log(f"{last} is a finished run: not retraining; producing outputs from its best.pt")
            return _outputs_from_finished(paths, cfg, ds, speed, wandb)
        return _fit(paths, cfg, ds, speed, sig, state, wandb, first_step, cache_store)
    finally:
        wandb.finish()


def _fit(paths, cfg, ds, speed, sig, state, wandb, first_step, cache_store) -> dict:
    last = paths.checkpoints / "last.pt"
    overrides: dict[str, Any] = {
        "data": str(ds.yaml_path),
        "save_dir": str(paths.checkpoints),
        "exist_ok": True,
        **speed,
    }
    if state == "resumable":
        overrides.update(model=str(last), resume=str(last))
        log(f"resuming from {last}")
    else:
        overrides.update(
            model=_resolve_model(cfg, paths), epochs=cfg.epochs, imgsz=cfg.imgsz, patience=cfg.patience,
            optimizer=cfg.optimizer, lrf=cfg.lrf, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
            warmup_epochs=cfg.warmup_epochs, close_mosaic=cfg.close_mosaic, mosaic=cfg.mosaic,
            fliplr=cfg.fliplr, seed=cfg.seed, cos_lr=cfg.cos_lr, plots=cfg.plots, compile=cfg.compile,
            project=str(paths.checkpoints.parent), name=paths.checkpoints.name, save=True, save_period=-1,
            val=True, verbose=True,
        )
        if cfg.lr0:
            overrides["lr0"] = cfg.lr0
        for f in (paths.checkpoints / "results.csv", paths.checkpoints / EPOCH_LOG):
            f.unlink(missing_ok=True)  # a fresh run must not inherit rows of an older one
    trainer = _trainer_class(sig)(overrides=overrides)
    state_cb: dict[str, Any] = {"pending": False}

    def on_train_start(t):
        _save_label_caches(ds, cache_store)
        sig.check()

    def on_epoch_start(t):
        sig.check()
        state_cb["t0"] = time.perf_counter()

    def on_batch_start(t):
        if not first_step:
            first_step["time_to_first_step_s"] = round(time.time() - PROCESS_START, 2)
            emit(f"yoloops-timing time_to_first_step_s={first_step['time_to_first_step_s']}")

    def on_batch_end(t):
        sig.check()

    def on_epoch_end(t):
        state_cb["train_s"] = time.perf_counter() - state_cb["t0"]
        state_cb["pending"] = True

    def on_fit_epoch_end(t):
        if not state_cb["pending"]:
            return  # final_eval's extra call: the closing line is printed after train() returns
        state_cb["pending"] = False
        n = len(t.train_loader.dataset)
        values: dict[str, Any] = {"epoch": t.epoch + 1, **_metric_values(t.metrics)}
        losses = t.label_loss_items(t.tloss) if t.tloss is not None else {}
        values["box_loss"] = _float(losses, "train/box_loss")
        values["images_per_s"] = round(n / max(state_cb["train_s"], 1e-9), 2)
        emit(format_metric_line(values))
        with (paths.checkpoints / EPOCH_LOG).open("a") as f:
            f.write(json.dumps(values) + "\n")
        wandb.log(values, step=values["epoch"])
        sig.check()

    for event, fn in (("on_train_start", on_train_start), ("on_train_epoch_start", on_epoch_start),
                      ("on_train_batch_start", on_batch_start), ("on_train_batch_end", on_batch_end),
                      ("on_train_epoch_end", on_epoch_end), ("on_fit_epoch_end", on_fit_epoch_end)):
        trainer.add_callback(event, fn)
    trainer.train()
    sig.check()
    final = _metric_values(trainer.metrics or {})
    per_class = _per_class(getattr(trainer.validator, "metrics", None), ds.names)
    emit(format_metric_line({"epoch": trainer.epoch + 1, **final}))
    extra = {**first_step, "resolved": {k: v for k, v in speed.items()}}
    return write_outputs(paths, cfg, final, per_class, extra)


def _outputs_from_finished(paths, cfg, ds, speed, wandb) -> dict:
    from ultralytics import YOLO

    ckpt = paths.checkpoints
    best = ckpt / "best.pt" if (ckpt / "best.pt").exists() else ckpt / "last.pt"
    model = YOLO(str(best))
    imgsz = int((model.ckpt or {}).get("train_args", {}).get("imgsz", cfg.imgsz))
    res = model.val(data=str(ds.yaml_path), imgsz=imgsz, batch=speed["batch"], device=speed["device"],
                    plots=False, project=str(paths.work), name="val", exist_ok=True, verbose=False)
    final = _metric_values(res.results_dict)
    n = len(_read_epoch_log(ckpt)) or 0
    emit(format_metric_line({"epoch": n, **final}))
    return write_outputs(paths, cfg, final, _per_class(res, ds.names), {"retrained": False})


def write_failure(paths: Paths, reason: str) -> None:
    line = " ".join(str(reason).split())[:1000] or "training failed"
    with contextlib.suppress(OSError):
        paths.output.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(line + "\n")
    log(f"FAILED: {line}")


def main(argv: list[str] | None = None) -> int:
    paths = Paths.from_env()
    sig = _Signals()
    previous = None
    with contextlib.suppress(ValueError):  # only the main thread may install handlers
        previous = signal.signal(signal.SIGTERM, sig.handler)
    try:
        cfg = load_config(paths)
        log(f"config {dataclasses.asdict(cfg)}")
        metrics = train(paths, cfg, sig)
        log(f"done: {json.dumps({k: v for k, v in metrics.items() if k != 'images_per_s_by_epoch'})}")
        return 0
    except Terminated:
        write_failure(paths, "stopped by SIGTERM (spot interruption or stop request); checkpoint kept in "
                             f"{paths.checkpoints} for resume")
        return 143
    except JobFailure as e:
        write_failure(paths, str(e))
        return 2
    except Exception as e:  # anything else: still one clear line, and the traceback in the logs
        import traceback

        traceback.print_exc()
        write_failure(paths, f"{type(e).__name__}: {e}")
        return 1
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
