"""The job's host checks (issue 17): never train on the CPU of a GPU instance, hosts given as fakes
(/proc files, /dev nodes, a torch stand-in); the /dev/shm budget; scratch space; the probe report."""

from __future__ import annotations

import json
import types
import zipfile
from pathlib import Path

import pytest

GiB = 2**30
CU130_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # torch 2.14 cu130, as installed here


class _Props:
    def __init__(self, name, mem):
        self.name, self.total_memory = name, mem


def fake_torch(devices=(), cuda="13.0", arch=CU130_ARCHS, warning=None, version="2.14.1+cu130"):
    """torch as the job reads it: version, torch.version.cuda, torch.cuda.* (devices: (name, (major, minor)))."""
    import warnings

    def is_available():
        if warning and not devices:
            warnings.warn(warning, UserWarning, stacklevel=1)
        return bool(devices)

    cuda_mod = types.SimpleNamespace(
        is_available=is_available, device_count=lambda: len(devices), get_arch_list=lambda: list(arch),
        get_device_properties=lambda i: _Props(devices[i][0], 24 * GiB),
        get_device_capability=lambda i: devices[i][1])
    return types.SimpleNamespace(__version__=version, version=types.SimpleNamespace(cuda=cuda), cuda=cuda_mod)


def fake_host(tmp_path, driver: str | None = None, dev_node: bool = False) -> dict:
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    (proc / "self").mkdir(parents=True)
    dev.mkdir()
    if driver:
        (proc / "driver" / "nvidia").mkdir(parents=True)
        (proc / "driver" / "nvidia" / "version").write_text(
            f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Wed Aug 25 22:15:37 UTC 2023\n"
            "GCC version:  gcc version 7.3.1 20180712 (Red Hat 7.3.1-17) (GCC)\n")
    if dev_node:
        (dev / "nvidia0").write_text("")
    return {"proc": proc, "dev": dev, "nvml": types.SimpleNamespace()}  # an NVML that knows nothing


@pytest.fixture
def paths(tmp_path):
    from yoloops_train.config import Paths

    p = Paths.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path / "ml")})
    p.checkpoints.mkdir(parents=True)
    return p


# ------------------------------------------------------------------------------------------ GPU fail-fast
DRIVER_TOO_OLD = ("CUDA initialization: The NVIDIA driver on your system is too old (found version 12020). "
                  "Please update your GPU driver")


def test_a_gpu_host_whose_driver_is_too_old_for_the_build_fails_naming_both_versions(tmp_path, paths, monkeypatch):
    from yoloops_train import host
    from yoloops_train.common import JobFailure
    from yoloops_train.config import TrainConfig
    from yoloops_train.job import check_host

    # g5 training hosts: driver 535 (CUDA 12.2); the image's torch is built for CUDA 13.0, and the entrypoint's
    # forward-compatibility libraries did not make it visible
    monkeypatch.setenv("YOLOOPS_CUDA_COMPAT", "used: cuda-compat 580.82.07 on host driver 535.104.12")
    kw = fake_host(tmp_path, driver="535.104.12")
    with pytest.raises(JobFailure) as err:
        check_host(paths, TrainConfig(), torch_mod=fake_torch(warning=DRIVER_TOO_OLD), **kw)
    msg = str(err.value)
    assert msg.startswith(host.GPU_UNAVAILABLE)
    assert "535.104.12" in msg and "CUDA 13.0" in msg and ">= 580" in msg and "cuda-compat" in msg
    assert "found version 12020" in msg  # what torch said, too
    assert "12.x" in msg  # what this driver does run
    assert "cuda-compat: used: cuda-compat 580.82.07 on host driver 535.104.12" in msg  # what the entrypoint did


def test_a_device_node_without_the_proc_file_is_a_gpu_host_too(tmp_path, paths):
    from yoloops_train import host

    facts = host.collect([paths.checkpoints], torch_mod=fake_torch(), **fake_host(tmp_path, dev_node=True))
    assert facts.nvidia_present and facts.driver_version is None
    assert host.gpu_problem(facts).startswith("GpuUnavailable: this instance has NVIDIA GPUs (driver unknown)")


def test_a_cpu_only_torch_on_a_gpu_host_says_so(tmp_path, paths):
    from yoloops_train import host

    facts = host.collect([], torch_mod=fake_torch(cuda=None, arch=[]), **fake_host(tmp_path, driver="580.65.06"))
    assert "is a CPU-only build" in host.gpu_problem(facts)


def test_a_gpu_whose_arch_has_no_kernels_in_the_build_fails(tmp_path, paths):
    from yoloops_train import host

    # ml.p3: V100 is sm_70; CUDA 13.0 builds start at sm_75
    v100 = fake_torch(devices=[("Tesla V100-SXM2-16GB", (7, 0))])
    facts = host.collect([], torch_mod=v100, **fake_host(tmp_path, driver="580.65.06"))
    problem = host.gpu_problem(facts)
    assert problem.startswith("GpuUnavailable: GPU 0 Tesla V100-SXM2-16GB (sm_70) has no kernels in this image")
    assert "sm_75" in problem and "InstanceType" in problem
    a10g = fake_torch(devices=[("NVIDIA A10G", (8, 6))])
    assert host.gpu_problem(host.collect([], torch_mod=a10g, **fake_host(tmp_path / "2", driver="580.65.06"))) is None


@pytest.mark.parametrize(("cap", "arch", "ok"), [
    ((8, 6), ["sm_80"], True),  # a cubin runs on a later minor of its major
    ((8, 0), ["sm_86"], False),  # ...not on an earlier one
    ((9, 0), ["sm_80", "sm_86"], False),  # nor on a later major
    ((9, 0), ["sm_80", "compute_80"], True),  # PTX is compiled at load time for any later GPU
    ((7, 0), CU130_ARCHS, False),
    ((12, 0), CU130_ARCHS, True),
    ((9, 0), ["sm_90a"], True),
])
def test_which_gpus_a_build_has_kernels_for(cap, arch, ok):
    from yoloops_train.host import has_kernels

    assert has_kernels(cap, arch) is ok


def test_a_cpu_instance_trains_on_the_cpu_and_the_host_is_logged(tmp_path, paths, capsys):
    from yoloops_train.config import TrainConfig
    from yoloops_train.job import check_host

    facts = check_host(paths, TrainConfig(), torch_mod=fake_torch(), **fake_host(tmp_path))
    assert not facts.nvidia_present and not facts.devices
    err = capsys.readouterr().err
    assert "NVIDIA driver none; torch 2.14.1+cu130 built for CUDA 13.0 with kernels for sm_75" in err
    assert "vCPUs, RAM" in err and "/dev/shm" in err
    assert f"disk {paths.checkpoints}:" in err and "GiB free" in err


def test_the_job_stops_before_training_with_the_reason_in_the_failure_file(train_module, tmp_path, monkeypatch):
    """The real entrypoint and this machine's real torch (a CUDA build, no GPU), on a host made to look like a
    g5 with driver 535: exit 2, one GpuUnavailable line, nothing trained."""
    from container_helpers import make_base
    from yoloops_train import host

    base = make_base(tmp_path / "ml", {"model": "yolo11n.yaml", "epochs": "1", "imgsz": "32"}, n_train=4, n_val=2,
                     imgsz=32)
    monkeypatch.setattr(host, "nvidia_present", lambda *a, **k: True)
    monkeypatch.setattr(host, "driver_version", lambda *a, **k: "535.104.12")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    for k in ("SM_CHANNEL_TRAIN", "SM_CHANNEL_WEIGHTS", "DATASET_ROOT", "BASE_WEIGHTS"):
        monkeypatch.delenv(k, raising=False)
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert train_module.main([]) == 2
    line = (base / "output" / "failure").read_text().strip()
    assert line.startswith("GpuUnavailable: the NVIDIA driver 535.104.12 is too old for this image's CUDA")
    assert not (base / "checkpoints" / "last.pt").exists() and not (base / "model").exists()


# -------------------------------------------------------------------------------------------- /dev/shm
def test_the_shm_estimate_counts_both_loaders_real_prefetch():
    from yoloops_train import ddp

    img = 3 * 640 * 640
    # Ultralytics 8.4.190: train prefetch 4 per worker; validation 2x workers, 2x batch, prefetch 2
    assert ddp.loader_shm_bytes(1, 16, 640) == 4 * 16 * img + 2 * 2 * 32 * img == 12 * 16 * img
    assert ddp.loader_shm_bytes(8, 16, 640) == 8 * ddp.loader_shm_bytes(1, 16, 640)
    assert ddp.nccl_shm_bytes(1) == 0 and ddp.nccl_shm_bytes(4) == 12 * ddp.NCCL_PER_PAIR


def test_small_shm_cuts_the_workers_and_turns_ncc_shm_off():
    from yoloops_train import ddp

    docker = ddp.plan_shm(64 * 2**20, workers=11, per_rank_batch=16, ranks=4, imgsz=640)  # Docker's default
    assert docker.workers == 0 and docker.nccl_shm_disable
    roomy = ddp.plan_shm(90 * GiB, workers=11, per_rank_batch=16, ranks=4, imgsz=640)  # ml.g5.12xlarge
    assert roomy.workers == 11 and not roomy.nccl_shm_disable
    tight = ddp.plan_shm(8 * GiB, workers=11, per_rank_batch=16, ranks=4, imgsz=640)
    assert 1 <= tight.workers < 11 and not tight.nccl_shm_disable
    assert tight.need_bytes <= 8 * GiB * ddp.LOADER_SHARE
    more = ddp.loader_shm_bytes(tight.workers + 1, 16, 640) * 4 + ddp.nccl_shm_bytes(4)
    assert more > 8 * GiB * ddp.LOADER_SHARE  # the most that fit
    assert ddp.plan_shm(0, 7, 16, 1, 640).workers == 7  # unknown size: unchanged


def test_ranks_inherit_offline_settings_and_nccl_without_shm(monkeypatch):
    from yoloops_train import ddp

    monkeypatch.delenv("NCCL_SHM_DISABLE", raising=False)
    env = ddp.rank_env("/opt/ultralytics", nccl_shm_disable=True, env={})
    assert env == {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": "/opt/ultralytics",
                   "NCCL_SHM_DISABLE": "1"}
    assert "NCCL_SHM_DISABLE" not in ddp.rank_env("/x", True, env={"NCCL_SHM_DISABLE": "0"})  # explicit wins


# ---------------------------------------------------------------------------------------------- scratch
def test_scratch_is_sagemakers_documented_tmp_and_apart_for_local_jobs():
    from yoloops_train.config import Paths

    assert Paths.from_env({}).work == Path("/tmp/yoloops")
    assert Paths.from_env({"SAGEMAKER_BASE_DIR": "/jobs/a"}).work == Path("/jobs/a/tmp")
    assert Paths.from_env({"YOLOOPS_SCRATCH_DIR": "/scratch"}).work == Path("/scratch")


def test_a_zip_larger_than_the_free_scratch_fails_before_extraction(tmp_path, monkeypatch):
    from yoloops_train import dataset, storage
    from yoloops_train.common import JobFailure

    channel = tmp_path / "train"
    channel.mkdir()
    with zipfile.ZipFile(channel / "v1.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/train/a.jpg", b"\0" * 4_000_000)  # compresses to almost nothing
    monkeypatch.setattr(storage, "free_bytes", lambda path: 100 * 2**20)
    with pytest.raises(JobFailure) as err:
        dataset.prepare_dataset(channel, tmp_path / "scratch")
    assert str(err.value).startswith("ScratchFull: extracting v1.zip needs 0.25 GiB")
    assert "0.10 GiB is free" in str(err.value)
    assert not any((tmp_path / "scratch" / "dataset").iterdir())  # nothing extracted


# ------------------------------------------------------------------------------------------------ probe
def test_probe_mode_reports_the_host_instead_of_training(train_module, tmp_path, monkeypatch, capsys):
    from container_helpers import make_base

    base = make_base(tmp_path / "ml", {"yoloops_mode": "probe"}, n_train=2, n_val=1, imgsz=32)
    (base / "checkpoints").mkdir()
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    assert train_module.main([]) == 0
    report = json.loads((base / "model" / "probe.json").read_text())
    assert report["torch_cuda"] and report["arch_list"] and report["cpus"] >= 1 and report["shm_bytes"] > 0
    assert {d["path"] for d in report["disks"]} >= {str(base / "checkpoints"), str(base / "model")}
    assert report["checkpoints_mount_point"] is False and report["container_started_at"] > 0
    assert not (base / "checkpoints" / "last.pt").exists()
    assert "yoloops-probe " in capsys.readouterr().out
