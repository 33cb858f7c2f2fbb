"""The host as the job finds it (driver, CUDA build, GPUs, CPUs, memory, disks), and the GPU fail-fast.

A CUDA build of torch on a host whose driver is older than the build's CUDA sees no GPU at all; without this
check the job would quietly train on the CPU of a paid GPU instance until MaxRuntime. So the job stops at once
with a reason that starts with GPU_UNAVAILABLE: the workflow (yoloops_core.steps) never retries it, since a new
job on the same instance type and image meets the same driver.

Everything the facts come from is a parameter (proc/dev roots, the torch module, NVML), so tests inject hosts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import warnings
from pathlib import Path
from typing import Any

from .common import JobFailure

GPU_UNAVAILABLE = "GpuUnavailable:"  # stable prefix of the failure line; steps.py classifies it as final

# Oldest Linux driver each CUDA major runs on (CUDA release notes, "minor version compatibility": 12.x needs
# >= 525.60.13, 13.x needs >= 580). A newer build on an older driver needs the cuda-compat package.
MIN_DRIVER = {11: (450, 80), 12: (525, 60), 13: (580, 0)}

_DRIVER_RX = re.compile(r"\s(\d{3,}\.\d+(?:\.\d+)?)\s")


@dataclasses.dataclass(frozen=True)
class Disk:
    path: str
    free_bytes: int
    total_bytes: int
    mount_point: bool
    fs_type: str = ""


@dataclasses.dataclass(frozen=True)
class Device:
    index: int
    name: str
    capability: tuple[int, int]
    memory_bytes: int

    @property
    def sm(self) -> str:
        return f"sm_{self.capability[0]}{self.capability[1]}"


@dataclasses.dataclass(frozen=True)
class HostFacts:
    nvidia_present: bool  # the kernel driver or a device node is there: this is a GPU instance
    driver_version: str | None
    torch_version: str
    torch_cuda: str | None  # torch.version.cuda; None = a CPU-only build
    cuda_available: bool
    cuda_error: str  # what torch said when it found no GPU (e.g. "driver too old")
    arch_list: tuple[str, ...]
    devices: tuple[Device, ...]
    cpus: int
    ram_total_bytes: int
    ram_available_bytes: int
    shm_bytes: int
    disks: tuple[Disk, ...]
    cuda_compat: str = ""  # what the image's entrypoint did about CUDA forward compatibility ($YOLOOPS_CUDA_COMPAT)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["devices"] = [{**dataclasses.asdict(x), "capability": f"{x.capability[0]}.{x.capability[1]}",
                         "sm": x.sm, "has_kernels": has_kernels(x.capability, self.arch_list)}
                        for x in self.devices]
        return d

    def lines(self) -> list[str]:
        gib = 2**30
        devs = ", ".join(f"{d.index}: {d.name} {d.sm} {d.memory_bytes / gib:.0f} GiB" for d in self.devices)
        out = [
            f"host: NVIDIA driver {self.driver_version or ('present, version unknown' if self.nvidia_present else 'none')}"
            f"; torch {self.torch_version} built for CUDA {self.torch_cuda or 'none (CPU build)'}"
            f" with kernels for {', '.join(self.arch_list) or 'no GPU arch'}"
            + (f"; cuda-compat: {self.cuda_compat}" if self.cuda_compat else ""),
            f"host: torch sees {len(self.devices)} GPU(s){': ' + devs if devs else ''}"
            + (f" ({self.cuda_error})" if self.cuda_error and not self.devices else ""),
            f"host: {self.cpus} vCPUs, RAM {self.ram_total_bytes / gib:.1f} GiB "
            f"({self.ram_available_bytes / gib:.1f} available), /dev/shm {self.shm_bytes / gib:.2f} GiB",
        ]
        out += [f"host: disk {d.path}: {d.free_bytes / gib:.1f} GiB free of {d.total_bytes / gib:.1f} GiB"
                f"{' (mount point' + (', ' + d.fs_type if d.fs_type else '') + ')' if d.mount_point else ''}"
                for d in self.disks]
        return out


# ------------------------------------------------------------------------------------------- collection
def driver_version(proc: Path = Path("/proc"), nvml: Any = None) -> str | None:
    """From /proc/driver/nvidia/version ("NVRM version: ... Kernel Module  535.104.12  ..."), else NVML."""
    with contextlib.suppress(OSError, ValueError):
        m = _DRIVER_RX.search((proc / "driver" / "nvidia" / "version").read_text())
        if m:
            return m.group(1)
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
        v = nvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # no NVML library or no driver: the version is simply unknown
        return None


def nvidia_present(proc: Path = Path("/proc"), dev: Path = Path("/dev")) -> bool:
    return (proc / "driver" / "nvidia" / "version").exists() or (dev / "nvidia0").exists()


def disk(path: Path, mounts: dict[str, str] | None = None) -> Disk | None:
    """Free space of the filesystem holding `path` (its nearest existing parent), and if it is a mount."""
    p = Path(path)
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    mounted = p.exists() and os.path.ismount(p)
    return Disk(str(p), st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize, mounted,
                (mounts or {}).get(str(p), "") if mounted else "")


def _mounts(proc: Path) -> dict[str, str]:
    out = {}
    with contextlib.suppress(OSError, ValueError):
        for line in (proc / "self" / "mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                out[parts[1]] = parts[2]
    return out


def _ram() -> tuple[int, int]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except ImportError:  # pragma: no cover
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def collect(paths: list[Path], *, torch_mod: Any = None, proc: Path = Path("/proc"), dev: Path = Path("/dev"),
            nvml: Any = None, shm: Path = Path("/dev/shm")) -> HostFacts:
    if torch_mod is None:
        import torch as torch_mod
    cuda = torch_mod.cuda
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            available = bool(cuda.is_available())
            error = ""
        except Exception as e:  # a broken driver can raise instead of returning False
            available, error = False, f"{type(e).__name__}: {e}"
    if not error and caught:
        error = " ".join(str(w.message) for w in caught)[:500]
    devices: list[Device] = []
    if available:
        for i in range(cuda.device_count()):
            props = cuda.get_device_properties(i)
            devices.append(Device(i, str(props.name), tuple(cuda.get_device_capability(i)), int(props.total_memory)))
    try:
        arch = tuple(cuda.get_arch_list())
    except Exception:
        arch = ()
    total, avail = _ram()
    shm_disk = disk(shm)
    mounts = _mounts(proc)
    disks = tuple(d for d in (disk(p, mounts) for p in paths) if d is not None)
    return HostFacts(nvidia_present(proc, dev), driver_version(proc, nvml), str(torch_mod.__version__),
                     getattr(torch_mod.version, "cuda", None), available, error, arch, tuple(devices), _cpus(),
                     total, avail, shm_disk.total_bytes if shm_disk else 0, disks,
                     os.environ.get("YOLOOPS_CUDA_COMPAT", ""))


# ----------------------------------------------------------------------------------------------- checks
def has_kernels(capability: tuple[int, int], arch_list: tuple[str, ...] | list[str]) -> bool:
    """Can this build run on a GPU of this capability? A cubin for sm_XY runs on the same major with a minor
    >= Y; PTX (compute_XY) is compiled at load time for any GPU >= XY."""
    major, minor = capability
    for a in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", a)
        if not m:
            continue
        am, an = int(m.group(2)), int(m.group(3))
        if m.group(1) == "sm" and am == major and an <= minor:
            return True
        if m.group(1) == "compute" and (am, an) <= (major, minor):
            return True
    return False


def _version_tuple(v: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v or ""))


def gpu_problem(facts: HostFacts) -> str | None:
    """Why this host's GPUs cannot be used by this build (a failure line naming the fix), or None."""
    if facts.devices:
        bad = [d for d in facts.devices if not has_kernels(d.capability, facts.arch_list)]
        if bad:
            names = ", ".join(f"GPU {d.index} {d.name} ({d.sm})" for d in bad)
            return (f"{GPU_UNAVAILABLE} {names} has no kernels in this image: torch {facts.torch_version} "
                    f"(CUDA {facts.torch_cuda}) is built for {', '.join(facts.arch_list)}. Fix: pick an "
                    "instance type whose GPU is in that list (InstanceType), or build the image on a CUDA "
                    "release that still ships this architecture")
        return None
    if not facts.nvidia_present:
        return None  # a CPU instance: training on the CPU is what was asked for
    drv = facts.driver_version or "unknown"
    if not facts.torch_cuda:
        return (f"{GPU_UNAVAILABLE} this instance has NVIDIA GPUs (driver {drv}) but torch "
                f"{facts.torch_version} is a CPU-only build. Fix: build the image with a CUDA build of torch")
    cuda = _version_tuple(facts.torch_cuda)
    need = MIN_DRIVER.get(cuda[0]) if cuda else None
    have = _version_tuple(facts.driver_version)
    why = f" ({facts.cuda_error})" if facts.cuda_error else ""
    if facts.cuda_compat:
        why += f"; cuda-compat: {facts.cuda_compat}"
    if need and have and have[:2] < need:
        return (f"{GPU_UNAVAILABLE} the NVIDIA driver {drv} is too old for this image's CUDA {facts.torch_cuda} "
                f"(needs driver >= {need[0]}); torch sees no GPU{why}. Fix: use an image built for a CUDA this "
                f"driver runs (driver {drv} supports CUDA {_cuda_for(have)}), add the cuda-compat libraries "
                f"for CUDA {facts.torch_cuda} to the image, or pick an instance type whose driver is newer "
                "(`yoloops image probe --instance-type T` shows it)")
    return (f"{GPU_UNAVAILABLE} this instance has NVIDIA GPUs (driver {drv}) but torch {facts.torch_version} "
            f"(CUDA {facts.torch_cuda}) sees none{why}. Fix: check the driver supports CUDA {facts.torch_cuda} "
            "(`yoloops image probe --instance-type T`) and that the container is started with the GPUs")


def _cuda_for(driver: tuple[int, ...]) -> str:
    ok = [f"{major}.x" for major, need in sorted(MIN_DRIVER.items()) if driver[:2] >= need]
    return " / ".join(ok) or "none of " + ", ".join(f"{m}.x" for m in MIN_DRIVER)


def check_gpu(facts: HostFacts) -> None:
    problem = gpu_problem(facts)
    if problem:
        raise JobFailure(problem)
