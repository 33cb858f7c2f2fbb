"""Decisions of the trainer package checked without training: multi-GPU settings, the resume ledger, the
DataLoader crash retry and the gpu_util metric."""

from __future__ import annotations

import re

import pytest
from yoloops_core.metrics import METRIC_DEFINITIONS, format_metric_line

GiB = 2**30


@pytest.fixture(scope="module")
def tp():
    from yoloops_train import throughput

    return throughput


def _cfg(**kw):
    from yoloops_train.config import parse_hyperparameters

    return parse_hyperparameters({k: str(v) for k, v in kw.items()})


# ------------------------------------------------------------------------------------------ every GPU
# The instance types the template offers, as detect_machine() would see them.
G5_2X = dict(cpus=8, gpu_count=1, gpu_mem_gb=22.0, bf16=True, available_ram_bytes=28 * GiB, shm_bytes=16 * GiB)
G5_12X = dict(cpus=48, gpu_count=4, gpu_mem_gb=22.0, bf16=True, available_ram_bytes=180 * GiB, shm_bytes=90 * GiB)
P4D_24X = dict(cpus=96, gpu_count=8, gpu_mem_gb=39.4, bf16=True, available_ram_bytes=1100 * GiB,
               shm_bytes=500 * GiB)


def test_one_gpu_trains_on_device_0_without_ddp(tp):
    s = tp.resolve_throughput(_cfg(model="yolo11n.yaml", imgsz=640), tp.Machine(**G5_2X), 4000, 0)
    assert s["device"] == "0" and tp.world_size(s) == 1
    assert s["batch"] == 32 and s["workers"] == 7 and s["cache"] == "ram" and s["amp"] == "bf16"


@pytest.mark.parametrize(("machine", "gpus"), [(G5_12X, 4), (P4D_24X, 8)])
def test_every_gpu_is_used_with_ddp_safe_settings(tp, machine, gpus):
    m = tp.Machine(**machine)
    s = tp.resolve_throughput(_cfg(model="yolo12s.yaml", imgsz=640), m, 4000, 0)
    assert s["device"] == ",".join(str(i) for i in range(gpus)) and tp.world_size(s) == gpus
    assert s["batch"] > 0 and s["batch"] % gpus == 0  # never AutoBatch (-1), an even split over the GPUs
    per_gpu = s["batch"] // gpus
    single = tp.resolve_throughput(_cfg(model="yolo12s.yaml", imgsz=640, device="0"), m, 4000, 0)
    assert per_gpu == single["batch"]  # each GPU gets the batch one GPU of that memory would get
    # workers are per training process: the CPUs are split, one core per process kept for its loop
    assert s["workers"] == min(32, (m.cpus - gpus) // gpus)
    assert s["workers"] * gpus <= m.cpus - gpus
    assert s["cache"] == "ram" and s["amp"] == "bf16" and s["deterministic"] is False


@pytest.mark.parametrize(("machine", "gpus"), [(G5_2X, 1), (G5_12X, 4), (P4D_24X, 8)])
def test_ram_cache_only_when_one_copy_per_gpu_fits(tp, machine, gpus):
    m = tp.Machine(**machine)
    cfg = _cfg(model="yolo11n.yaml", imgsz=640)
    per_copy = 640 * 640 * 3
    fits = int(m.available_ram_bytes / (2 * gpus * per_copy)) - 10  # just under the N-copies limit
    assert tp.resolve_throughput(cfg, m, fits, 0)["cache"] == "ram"
    too_many = int(m.available_ram_bytes / (2 * gpus * per_copy)) + 10
    assert tp.resolve_throughput(cfg, m, too_many, 0)["cache"] is False


@pytest.mark.parametrize(("asked", "gpus", "expected"), [(64, 4, 64), (50, 4, 48), (3, 4, 4), (100, 8, 96),
                                                         (7, 1, 7)])
def test_an_explicit_batch_becomes_a_multiple_of_the_gpu_count(tp, asked, gpus, expected):
    m = tp.Machine(**{**P4D_24X, "gpu_count": gpus})
    assert tp.resolve_throughput(_cfg(batch=asked), m, 4000, 0)["batch"] == expected


def test_explicit_device_and_cpu_override_the_machine(tp):
    m = tp.Machine(**P4D_24X)
    two = tp.resolve_throughput(_cfg(device="2,3"), m, 4000, 0)
    assert two["device"] == "2,3" and two["batch"] % 2 == 0 and tp.world_size(two) == 2
    cpu = tp.resolve_throughput(_cfg(device="cpu"), m, 4000, 0)
    assert cpu["device"] == "cpu" and cpu["workers"] == 0 and tp.world_size(cpu) == 1


def test_small_shared_memory_limits_the_workers(tp):
    # Docker's default 64 MiB /dev/shm: a 640 px batch of 16 needs ~40 MiB per worker in flight
    docker = tp.Machine(**{**G5_12X, "shm_bytes": 64 * 2**20})
    s = tp.resolve_throughput(_cfg(model="yolo11n.yaml", imgsz=640, batch=64), docker, 4000, 0)
    assert s["workers"] == 0
    roomy = tp.Machine(**{**G5_12X, "shm_bytes": 8 * GiB})
    s = tp.resolve_throughput(_cfg(model="yolo11n.yaml", imgsz=640, batch=64), roomy, 4000, 0)
    # per worker: train prefetch 4 x per-GPU batch 16 + validation 2 x (2 x 32), x image bytes, x 4 processes
    need = (4 * 16 + 2 * 2 * 32) * 3 * 640 * 640 * 4
    assert 1 <= s["workers"] <= 8 * GiB * 0.5 // need


def test_machine_line_names_gpus_cpus_ram_and_shm(tp):
    line = tp.Machine(**P4D_24X, total_ram_bytes=1152 * GiB, gpu_names=("NVIDIA A100-SXM4-40GB",) * 8).describe()
    assert line.startswith("8 x NVIDIA A100-SXM4-40GB (39 GiB), 96 vCPUs, RAM 1152.0 GiB")
    assert "/dev/shm 500.00 GiB" in line


# ---------------------------------------------------------------------------------------- resume ledger
def _csv(path, epochs, torn=False):
    rows = ["epoch,time,train/box_loss"] + [f"{e},{e * 1.5},{1.0 / e}" for e in epochs]
    path.write_text("\n".join(rows) + "\n" + ("7,12" if torn else ""))


def test_reconcile_cuts_results_and_records_beyond_the_checkpoint(tmp_path):
    from yoloops_train import resume

    # killed after epoch 4's results.csv row and ledger record, before its last.pt rename: last.pt holds 3
    _csv(tmp_path / "results.csv", [1, 2, 3, 4], torn=True)
    for e in (1, 2, 3, 4):
        resume.add_record(tmp_path, {"epoch": e, "mAP50": e / 10})
        if e < 4:
            resume.mark_emitted(tmp_path, e)
    resume.reconcile(tmp_path, committed=3)
    assert [ln.split(",")[0] for ln in (tmp_path / "results.csv").read_text().splitlines()] == \
        ["epoch", "1", "2", "3"]
    assert [r["epoch"] for r in resume.read_epoch_log(tmp_path)] == [1, 2, 3]
    # the redone epoch 4 replaces nothing twice, and nothing is pending until it is committed
    resume.add_record(tmp_path, {"epoch": 4, "mAP50": 0.45})
    assert resume.pending_records(tmp_path, committed=3) == []
    assert [r["mAP50"] for r in resume.pending_records(tmp_path, committed=4)] == [0.45]


def test_a_committed_epoch_whose_line_was_lost_is_printed_once(tmp_path, capsys):
    from yoloops_train import resume

    for e in (1, 2):
        resume.add_record(tmp_path, {"epoch": e, "mAP50": 0.5, "box_loss": 1.0, "images_per_s": 10.0})
    resume.mark_emitted(tmp_path, 1)  # killed after epoch 2's last.pt rename, before its line
    logged = []
    wandb = type("W", (), {"log": lambda self, d, step: logged.append(step)})()
    assert [r["epoch"] for r in resume.emit_pending(tmp_path, 2, wandb)] == [2]
    assert resume.emit_pending(tmp_path, 2, wandb) == []  # a second start prints nothing again
    out = capsys.readouterr().out.splitlines()
    assert out == [format_metric_line({"epoch": 2, "mAP50": 0.5, "box_loss": 1.0, "images_per_s": 10.0})]
    assert logged == [2]


def test_committed_epochs_of_a_stripped_checkpoint(tmp_path):
    from yoloops_train import resume

    assert resume.committed_epochs({"epoch": 4}, tmp_path) == 5
    assert resume.committed_epochs({"epoch": -1, "train_results": {"epoch": [1.0, 2.0, 3.0]}}, tmp_path) == 3
    resume.add_record(tmp_path, {"epoch": 6})
    assert resume.committed_epochs({"epoch": -1}, tmp_path) == 6


# -------------------------------------------------------------------------------- DataLoader crash retry
def test_loader_crashes_are_told_from_other_errors(tp):
    assert tp.is_loader_crash(RuntimeError("DataLoader worker (pid 4321) is killed by signal: Bus error."))
    assert tp.is_loader_crash("RuntimeError: unable to write to file </torch_123_456>: No space left on device "
                              "(28) ... DataLoader worker exited unexpectedly, shared memory")
    assert not tp.is_loader_crash(RuntimeError("CUDA out of memory"))
    assert not tp.is_loader_crash(ValueError("bad box in labels"))
    assert tp.fallback_workers(15) == [7, 0] and tp.fallback_workers(1) == [0] and tp.fallback_workers(0) == []


def test_fit_retries_a_loader_crash_with_fewer_workers_then_none(tmp_path, monkeypatch):
    from yoloops_train import fit as fit_mod
    from yoloops_train.config import Paths
    from yoloops_train.dataset import PreparedDataset

    tried = []

    class FlakyLoaderTrainer:
        def __init__(self, overrides):
            self.workers = overrides["workers"]
            self.metrics, self.validator, self.epoch = {"metrics/mAP50(B)": 0.5}, None, 2

        def train(self):
            tried.append(self.workers)
            if self.workers:
                raise RuntimeError(f"DataLoader worker (pid {100 + self.workers}) is killed by signal: Bus error.")

    monkeypatch.setattr(fit_mod, "YoloopsTrainer", FlakyLoaderTrainer)
    paths = Paths.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    paths.checkpoints.mkdir(parents=True)
    ds = PreparedDataset(tmp_path / "data.yaml", tmp_path, ["a"], 10, 2, 0, [])
    speed = {"device": "0", "batch": 16, "workers": 12, "cache": False, "amp": True, "deterministic": False}
    final, _, epochs = fit_mod.fit(paths, _cfg(model="yolo11n.yaml"), ds, speed, ["0"])
    assert tried == [12, 6, 0]
    assert final["mAP50"] == 0.5 and epochs == 3

    tried.clear()
    monkeypatch.setattr(FlakyLoaderTrainer, "train", lambda self: tried.append(1) or (_ for _ in ()).throw(
        RuntimeError("CUDA error: an illegal memory access")))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        fit_mod.fit(paths, _cfg(model="yolo11n.yaml"), ds, speed, ["0"])
    assert tried == [1]  # anything else is not retried


# -------------------------------------------------------------------------------------------- gpu_util
def test_gpu_util_in_the_line_matches_its_metric_definition(tp):
    from yoloops_train.common import format_metric_line as container_format

    values = {"epoch": 3, "mAP50": 0.5, "box_loss": 1.25, "images_per_s": 812.5, "gpu_util": 96.5}
    line = container_format(values)
    assert line == format_metric_line(values)
    rx = re.compile(next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == "gpu_util"))
    assert float(rx.search(line).group(1)) == 96.5
    # images_per_s is not confused with it, and a CPU line without it parses without a gpu_util value
    ips = re.compile(next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == "images_per_s"))
    assert float(ips.search(line).group(1)) == 812.5
    assert not rx.search(container_format({k: v for k, v in values.items() if k != "gpu_util"}))


def test_gpu_sampler_means_per_epoch_and_is_silent_without_nvml(tp):
    sampler = tp.GpuSampler([])  # no GPU: no NVML, no thread
    assert sampler.mean_since(0.0) is None
    sampler.samples = [(1.0, 20.0), (2.0, 90.0), (3.0, 100.0)]
    assert sampler.mean_since(2.0) == 95.0
    sampler.stop()


# ------------------------------------------------------------------------- DDP launch (no GPU needed)
DDP_WORKER = r"""
import json, sys
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.patches import torch_load
state = torch_load(sys.argv[1], map_location="cpu")   # what Ultralytics' DDP temp file does in every rank
cfg = DEFAULT_CFG_DICT.copy()
cfg.update(save_dir="")
trainer = state["trainer"](cfg=cfg, overrides=state["args"], _callbacks=state["callbacks"])
from yoloops_train import trainer as t
print("DDP " + json.dumps({"cls": f"{type(trainer).__module__}.{type(trainer).__name__}",
      "hooks": {e: trainer.callbacks[e].count(fn) for e, fn in t._HOOKS.items()},
      "job": sorted(trainer.job), "last": str(trainer.last)}))
"""


@pytest.mark.slow
def test_ddp_ranks_rebuild_the_yoloops_trainer_from_ultralytics_state_file(tmp_path, monkeypatch):
    """The per-GPU processes Ultralytics starts must find our trainer class and hooks (once) and the job."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from container_helpers import TRAIN_PY, make_base
    from ultralytics.utils.dist import ddp_cleanup, generate_ddp_file
    from yoloops_train.dataset import prepare_dataset
    from yoloops_train.trainer import JOB_ENV, YoloopsTrainer, job_context

    base = make_base(tmp_path / "ml", {}, n_train=4, n_val=2, imgsz=32)
    ds = prepare_dataset(base / "input" / "data" / "train", tmp_path / "work")
    monkeypatch.setenv(JOB_ENV, job_context(ds, tmp_path / "ckpt" / "label_cache", ["0", "1"], "yoloops", {"epochs": 1}))
    trainer = YoloopsTrainer(overrides={"model": str(TRAIN_PY.parent / "yoloops-tiny.yaml"), "data": str(ds.yaml_path),
                                        "device": "cpu", "epochs": 1, "imgsz": 32, "save_dir": str(tmp_path / "ckpt"),
                                        "exist_ok": True, "plots": False})
    file = generate_ddp_file(trainer)
    try:
        env = {**os.environ, "PYTHONPATH": str(TRAIN_PY.parent)}
        out = subprocess.run([sys.executable, "-c", DDP_WORKER, str(Path(file).with_suffix(".pt"))], env=env,
                             capture_output=True, text=True, timeout=120)
    finally:
        ddp_cleanup(trainer, file)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("DDP "))[4:])
    assert got["cls"] == "yoloops_train.trainer.YoloopsTrainer"
    assert set(got["hooks"].values()) == {1}  # every hook present, none twice
    assert got["job"] == ["cache_store", "checkpoints", "config", "dataset", "devices", "wandb_project"]
    assert got["last"] == str(tmp_path / "ckpt" / "last.pt")
