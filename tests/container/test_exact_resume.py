"""Exact resume: killed at 5 random moments (SIGKILL and SIGTERM), a short run still counts each epoch once.

The entrypoint runs as real processes, restarted on the same checkpoint dir the way SageMaker restarts a spot
job. Checked at the end: results.csv and the metric lines across all processes hold epochs 1..N exactly once,
the final checkpoint trained exactly N epochs, and W&B (a recording stand-in module) saw one run id throughout.
The kill moments come from a fixed seed, so a failure names a reproducible schedule.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from container_helpers import TRAIN_PY, make_base

EPOCHS = 8
HYPER = {"model": "yoloops-tiny.yaml", "epochs": str(EPOCHS), "imgsz": "32", "batch": "8", "optimizer": "SGD",
         "lr0": "0.01", "warmup_epochs": "0", "mosaic": "0", "close_mosaic": "0", "plots": "false"}
SEED = 20261201
KILLS = 5

FAKE_WANDB = '''
import json, os, uuid
def _w(rec):
    with open(os.environ["FAKE_WANDB_LOG"], "a") as f:
        f.write(json.dumps(rec) + "\\n")
class util:
    generate_id = staticmethod(lambda: uuid.uuid4().hex[:8])
def Settings(**kw):
    return kw
class _Run:
    def __init__(self, run_id):
        self.id, self.summary = run_id, {}
    def log(self, data, step=None):
        _w({"log": step, "epoch": data.get("epoch")})
    def finish(self):
        _w({"finish": self.id})
def init(**kw):
    _w({"init": kw["id"], "resume": kw["resume"]})
    return _Run(kw["id"])
'''


def _env(base: Path, fake: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"SM_CHANNEL_TRAIN", "SM_CHANNEL_WEIGHTS", "DATASET_ROOT", "BASE_WEIGHTS", "WANDB_SECRET_ARN"}}
    env.update(SAGEMAKER_BASE_DIR=str(base), YOLO_CONFIG_DIR=str(base.parent / "ucfg"),
               MPLCONFIGDIR=str(base.parent / "mpl"), PYTHONUNBUFFERED="1", WANDB_API_KEY="local-test-key",
               FAKE_WANDB_LOG=str(base.parent / "wandb.jsonl"),
               PYTHONPATH=os.pathsep.join([str(fake), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def _run(base: Path, env: dict, log: Path, kill: tuple[int, float] | None, sig: int) -> tuple[int, list[str], float]:
    """Run the entrypoint to the end, or send `sig` at `kill` = (epoch lines to see first, then seconds after
    the last of them, or after the first training step for 0); returns (exit code, stdout lines, seconds between
    the first two epoch lines, 0 if fewer)."""
    out = base.parent / "stdout.txt"
    with out.open("w") as fo:
        proc = subprocess.Popen([sys.executable, str(TRAIN_PY)], env=env, stdout=fo, stderr=log.open("ab"))
        deadline = time.monotonic() + 240
        started = armed = None
        seen: list[float] = []  # when each epoch line appeared
        while proc.poll() is None and time.monotonic() < deadline:
            text = out.read_text()
            if started is None and "yoloops-timing" in text:
                started = time.monotonic()
            if text.count("yoloops-metric epoch=") > len(seen):
                seen.append(time.monotonic())
            if kill is not None and started is not None and armed is None and len(seen) >= kill[0]:
                armed = time.monotonic()
            if armed is not None and time.monotonic() - armed >= kill[1]:
                proc.send_signal(sig)
                break
            time.sleep(0.01)
        rc = proc.wait(timeout=150)
    return rc, out.read_text().splitlines(), seen[1] - seen[0] if len(seen) > 1 else 0.0


def _committed(base: Path) -> int:
    """Epochs last.pt holds (0 without one)."""
    import torch

    last = base / "checkpoints" / "last.pt"
    if not last.exists():
        return 0
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    return EPOCHS if ckpt["epoch"] == -1 else int(ckpt["epoch"]) + 1


@pytest.mark.slow
def test_killed_at_random_moments_each_epoch_counts_once(tmp_path):
    base = make_base(tmp_path / "ml", HYPER, n_train=16, n_val=4, imgsz=32)
    fake = tmp_path / "fake_site"
    (fake / "wandb").mkdir(parents=True)
    (fake / "wandb" / "__init__.py").write_text(FAKE_WANDB)
    env, log = _env(base, fake), tmp_path / "stderr.log"
    rng = random.Random(SEED)
    lines: list[str] = []
    schedule = []
    epoch_s = 0.0
    for i in range(KILLS):
        # The first kill lands after epoch 2 (epochs 1 -> 2 measure one epoch, epoch_s, on this machine);
        # later ones anywhere in the first epoch of a resumed run: in a batch, a validation, a save.
        frac, sig = round(rng.uniform(0.0, 1.0), 3), signal.SIGTERM if i % 2 else signal.SIGKILL
        kill = (2, frac * 0.5) if i == 0 else (0, frac * epoch_s)
        rc, out, measured = _run(base, env, log, kill, sig)
        epoch_s = epoch_s or measured
        schedule.append((frac, sig.name))
        lines += out
        (base / "output" / "failure").unlink(missing_ok=True)
        schedule[-1] += (rc, _committed(base))
        if rc == 0:  # finished before the kill: the remaining kills hit a finished job, which must not retrain
            continue
        assert rc in {143, -9, -15}, (schedule, log.read_text()[-3000:])
    print(f"epoch {epoch_s:.2f} s; kill schedule (epochs fraction, signal, exit code, epochs in last.pt):", schedule)
    # the kills really interrupted training: (nearly) all landed before the last epoch was saved
    assert sum(committed < EPOCHS for *_, committed in schedule) >= KILLS - 1, schedule
    rc, out, _ = _run(base, env, log, None, signal.SIGKILL)
    lines += out
    assert rc == 0, (schedule, log.read_text()[-3000:])

    epoch_lines = [int(m.group(1)) for ln in lines if (m := re.match(r"yoloops-metric epoch=(\d+) .*box_loss", ln))]
    assert epoch_lines == list(range(1, EPOCHS + 1)), (schedule, epoch_lines)
    csv = (base / "model" / "results.csv").read_text().strip().splitlines()
    assert [int(float(r.split(",")[0])) for r in csv[1:]] == list(range(1, EPOCHS + 1)), (schedule, csv)

    import torch

    # final_eval stripped last.pt (epoch -1); the run's own results snapshot inside it says what it trained
    ckpt = torch.load(base / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["epochs"] == EPOCHS
    assert [int(e) for e in ckpt["train_results"]["epoch"]] == list(range(1, EPOCHS + 1))
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    assert metrics["epochs_run"] == EPOCHS

    wandb = [json.loads(x) for x in (tmp_path / "wandb.jsonl").read_text().splitlines() if x.endswith("}")]
    ids = {r["init"] for r in wandb if "init" in r}
    assert len(ids) == 1 and all(r["resume"] == "allow" for r in wandb if "init" in r), wandb
    assert (base / "checkpoints" / "wandb_run_id").read_text() in ids
    steps = [r["log"] for r in wandb if "log" in r]
    assert len(steps) == len(set(steps)) and set(steps) <= set(range(1, EPOCHS + 1)), (schedule, steps)
