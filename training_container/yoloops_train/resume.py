"""Checkpoints and signals: what a restarted job finds, and SIGTERM that never interrupts a checkpoint write."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .common import Terminated, log

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


class Signals:
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


def read_epoch_log(ckpt_dir: Path) -> list[dict]:
    f = ckpt_dir / EPOCH_LOG
    if not f.exists():
        return []
    rows = {}
    for line in f.read_text().splitlines():
        with contextlib.suppress(ValueError):
            r = json.loads(line)
            rows[r["epoch"]] = r  # a redone epoch (after a kill) replaces its earlier row
    return [rows[k] for k in sorted(rows)]
