"""Multi-GPU launch against a real SageMaker checkpoint mount, and offline ranks, on the CPU (issue 17).

On SageMaker /opt/ml/checkpoints is a mount point: removing it deletes its files, then rmdir fails with EBUSY.
Ultralytics 8.4.190 removes the trainer's save_dir on every fresh multi-GPU launch
(utils/dist.py generate_ddp_command), so the save_dir must never be that folder.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _mount_like(monkeypatch, mount: Path) -> None:
    """shutil.rmtree(mount) behaves as on a mount point: the files go, then the rmdir raises EBUSY."""
    real = shutil.rmtree

    def rmtree(path, *a, **kw):
        if Path(path).resolve() == mount.resolve():
            for child in list(mount.iterdir()):
                real(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(shutil, "rmtree", rmtree)


def _earlier_attempt(ckpt: Path) -> dict[str, bytes]:
    """What an earlier attempt leaves in the checkpoint folder (label caches, ledger, W&B id, a kept copy)."""
    files = {"label_cache/train.cache": b"scan", "yoloops-epochs.json": b'{"records": [], "emitted": 0}',
             "wandb_run_id": b"abc123", "last.pt.corrupt": b"torn"}
    for rel, data in files.items():
        (ckpt / rel).parent.mkdir(parents=True, exist_ok=True)
        (ckpt / rel).write_bytes(data)
    return files


def _trainer(tmp_path, monkeypatch, save_dir_override: Path | None = None):
    from container_helpers import make_base
    from yoloops_train import fit
    from yoloops_train.config import Paths, parse_hyperparameters
    from yoloops_train.dataset import prepare_dataset
    from yoloops_train.trainer import JOB_ENV, YoloopsTrainer, job_context

    base = make_base(tmp_path / "ml", {}, n_train=4, n_val=2, imgsz=32)
    paths = Paths.from_env({"SAGEMAKER_BASE_DIR": str(base)})
    paths.checkpoints.mkdir(parents=True)
    files = _earlier_attempt(paths.checkpoints)
    cfg = parse_hyperparameters({"model": "yoloops-tiny.yaml", "epochs": "1", "imgsz": "32", "plots": "false"})
    ds = prepare_dataset(paths.train, paths.work)
    monkeypatch.setenv(JOB_ENV, job_context(ds, paths.checkpoints / "label_cache", ["0", "1"], "yoloops", {},
                                            checkpoints=paths.checkpoints))
    speed = {"device": "cpu", "batch": 2, "workers": 0, "cache": False, "amp": False, "deterministic": True}
    overrides = fit._overrides(paths, cfg, ds, speed, "none")
    if save_dir_override is not None:
        overrides.update(save_dir=str(save_dir_override))
    return YoloopsTrainer(overrides=overrides), paths, files


def test_a_fresh_ddp_launch_keeps_everything_in_the_checkpoint_mount(tmp_path, monkeypatch):
    from ultralytics.utils.dist import ddp_cleanup, generate_ddp_command

    trainer, paths, files = _trainer(tmp_path, monkeypatch)
    _mount_like(monkeypatch, paths.checkpoints)
    assert not trainer.resume and Path(trainer.save_dir) != paths.checkpoints
    assert trainer.last == paths.checkpoints / "last.pt"  # checkpoints still land in the mount
    cmd, file = generate_ddp_command(trainer)  # the real one: rmtree(save_dir) for a fresh run
    try:
        assert "torch.distributed.run" in cmd and file in cmd
    finally:
        ddp_cleanup(trainer, file)
    assert not Path(trainer.save_dir).exists()  # Ultralytics removed its own scratch run folder...
    for rel, data in files.items():  # ...and nothing an earlier attempt left in the mount
        assert (paths.checkpoints / rel).read_bytes() == data, rel


def test_the_mount_fake_bites_when_save_dir_is_the_checkpoint_folder(tmp_path, monkeypatch):
    """What the job did before: the files are gone and the launch dies with EBUSY."""
    from ultralytics.utils.dist import generate_ddp_command

    trainer, paths, files = _trainer(tmp_path, monkeypatch, save_dir_override=tmp_path / "ml" / "checkpoints")
    _mount_like(monkeypatch, paths.checkpoints)
    with pytest.raises(OSError) as err:
        generate_ddp_command(trainer)
    assert err.value.errno == errno.EBUSY
    assert not any((paths.checkpoints / rel).exists() for rel in files)


# --------------------------------------------------------------------------------------- offline ranks
RANK_SCRIPT = r"""
import json, socket, sys
attempts = []
def refuse(what):
    def f(*a, **k):
        attempts.append(what + repr(a[:2]))
        raise OSError("offline test: " + what)
    return f
socket.socket.connect = refuse("connect")
socket.create_connection = refuse("create_connection")
socket.getaddrinfo = refuse("getaddrinfo")
# what Ultralytics' DDP temp file does in every rank (utils/dist.py generate_ddp_file)
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.patches import torch_load
state = torch_load(sys.argv[1], map_location="cpu")
cfg = DEFAULT_CFG_DICT.copy()
cfg.update(save_dir="")
trainer = state["trainer"](cfg=cfg, overrides=state["args"], _callbacks=state["callbacks"])
import ultralytics.data.utils as du
print("RANK " + json.dumps({"attempts": attempts, "check_font": du.check_font.__name__}))
"""


def test_a_rank_is_offline_before_ultralytics_checks_the_dataset(tmp_path, monkeypatch):
    """A rank builds the trainer (dataset check -> check_font) with no font in its settings dir: no socket."""
    from container_helpers import TRAIN_PY
    from ultralytics.utils.dist import ddp_cleanup, generate_ddp_file
    from yoloops_train.ddp import rank_env

    trainer, _, _ = _trainer(tmp_path, monkeypatch)
    file = generate_ddp_file(trainer)
    empty = tmp_path / "no-fonts"  # Ultralytics would download Arial.ttf into $YOLO_CONFIG_DIR/Ultralytics/
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "RANK", "LOCAL_RANK"))}
    env.update(rank_env(str(empty), False, env={}), RANK="0", LOCAL_RANK="0", WORLD_SIZE="2",
               PYTHONPATH=str(TRAIN_PY.parent), MPLCONFIGDIR=str(tmp_path / "mpl"))
    try:
        out = subprocess.run([sys.executable, "-c", RANK_SCRIPT, str(Path(file).with_suffix(".pt"))], env=env,
                             capture_output=True, text=True, timeout=180)
    finally:
        ddp_cleanup(trainer, file)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RANK "))[5:])
    assert got["check_font"] == "offline_font"
    assert got["attempts"] == []
