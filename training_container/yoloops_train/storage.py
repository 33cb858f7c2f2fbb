"""Where the job writes what SageMaker does not keep: scratch space, and Ultralytics' run folder.

SageMaker documents /tmp as a training job's scratch space (model-train-storage-env-var-summary:
"/tmp - Reading or writing to /tmp as a scratch space"); /opt/ml/checkpoints is synced to S3 and, on a real
host, is a mount point that cannot be removed. Ultralytics deletes its `save_dir` on every fresh multi-GPU
run (utils/dist.py generate_ddp_command: shutil.rmtree(trainer.save_dir)), so its save_dir is a folder under
scratch (`run_dir`) and the trainer copies each committed checkpoint into the checkpoint folder itself.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from .common import JobFailure

SCRATCH_FULL = "ScratchFull:"
SAGEMAKER_SCRATCH = Path("/tmp/yoloops")
MARGIN_BYTES = 256 * 2**20  # label caches, data.yaml, the bundle's small files


def scratch_dir(base: Path, env: dict[str, str] | None = None) -> Path:
    """/tmp/yoloops on SageMaker (base /opt/ml); <base>/tmp for a local job or a test, so each stays apart."""
    env = dict(os.environ if env is None else env)
    if env.get("YOLOOPS_SCRATCH_DIR"):
        return Path(env["YOLOOPS_SCRATCH_DIR"])
    return SAGEMAKER_SCRATCH if Path(base) == Path("/opt/ml") else Path(base) / "tmp"


def run_dir(scratch: Path) -> Path:
    """Ultralytics' save_dir: a folder it may delete (never the checkpoint mount)."""
    return Path(scratch) / "ultralytics-run"


def free_bytes(path: Path) -> int:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def require_free(path: Path, need_bytes: int, what: str, *, free: int | None = None) -> None:
    """Fail before writing `need_bytes` under `path` when its filesystem has less free space."""
    have = free_bytes(path) if free is None else free
    if have < need_bytes:
        gib = 2**30
        raise JobFailure(
            f"{SCRATCH_FULL} {what} needs {need_bytes / gib:.2f} GiB in {path} but only {have / gib:.2f} GiB is "
            "free. Fix: upload the dataset as a folder instead of a zip (SageMaker downloads channels to the "
            "ML storage volume), or raise VolumeSizeInGB / pick an instance type with more local storage")


def zip_extracted_bytes(archive: Path) -> int:
    try:
        with zipfile.ZipFile(archive) as zf:
            return sum(m.file_size for m in zf.infolist())
    except zipfile.BadZipFile:
        return 0  # _safe_extract names the broken zip


def commit_copy(src: Path, dest: Path) -> None:
    """Copy src over dest so that dest is always either the old or the new file (never torn)."""
    tmp = dest.with_name(dest.name + ".copy")
    shutil.copy2(src, tmp)
    os.replace(tmp, dest)
