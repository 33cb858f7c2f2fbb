"""Checkpoints, the epoch ledger and signals: a job killed at any moment resumes with each epoch counted once.

Per epoch Ultralytics writes results.csv, then last.pt (our atomic save), then calls on_fit_epoch_end. A kill
between those steps used to repeat an epoch row (csv written, checkpoint not) or lose a metric line
(checkpoint written, line not). Here last.pt is the single truth of what is done:

1. save_model writes last.pt.partial; the ledger (yoloops-epochs.json) gets the epoch's record, atomically;
2. last.pt.partial is renamed over last.pt: the epoch is committed;
3. the metric line is printed, then the ledger marks it emitted.

On start, `reconcile` cuts results.csv rows and ledger records beyond last.pt's epoch (steps 1-2 interrupted),
and `pending_records` returns committed records not yet emitted (3 interrupted), which are printed first.
The only window left is between printing a line and marking it (microseconds), where a kill repeats one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from .common import Terminated, emit, format_metric_line, log

DONE_MARKER = "yoloops-done.json"
EPOCH_LEDGER = "yoloops-epochs.json"
EPOCH_LOG = EPOCH_LEDGER  # the name tests and the README know the per-epoch records by


def checkpoint_state(last: Path) -> tuple[str, dict]:
    """('none'|'resumable'|'finished'|'corrupt'|'untrusted', checkpoint dict or {}); 'untrusted' = not a file
    this job wrote (seals.py), never loaded."""
    if not last.exists():
        return "none", {}
    from .seals import SEALS, trusted

    if not trusted(last):
        log(f"WARNING {last} was not written by this job (no matching sha256 in {SEALS}): not loaded")
        return "untrusted", {}
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


def committed_epochs(ckpt: dict, ckpt_dir: Path) -> int:
    """Epochs a checkpoint holds. final_eval's strip sets epoch to -1; such a run committed all it trained."""
    epoch = int(ckpt.get("epoch", -1))
    if epoch >= 0:
        return epoch + 1
    records = read_ledger(ckpt_dir)["records"]
    if records:
        return int(records[-1]["epoch"])
    epochs = (ckpt.get("train_results") or {}).get("epoch") or []
    return int(max(epochs)) if epochs else 0


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ ledger
def read_ledger(ckpt_dir: Path) -> dict[str, Any]:
    """{"records": [per-epoch metric values, epoch ascending], "emitted": last epoch printed, ...}."""
    f = ckpt_dir / EPOCH_LEDGER
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(f.read_text())
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            data.setdefault("emitted", 0)
            return data
    return {"records": [], "emitted": 0}


def write_ledger(ckpt_dir: Path, ledger: dict[str, Any]) -> None:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(ckpt_dir / EPOCH_LEDGER, json.dumps(ledger))


def read_epoch_log(ckpt_dir: Path) -> list[dict]:
    return list(read_ledger(ckpt_dir)["records"])


def add_record(ckpt_dir: Path, record: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Step 1: the epoch's record, replacing a record of the same or a later epoch (a redone epoch)."""
    ledger = read_ledger(ckpt_dir)
    ledger["records"] = [r for r in ledger["records"] if r["epoch"] < record["epoch"]] + [record]
    ledger["emitted"] = min(ledger["emitted"], record["epoch"] - 1)
    ledger.update(extra)
    write_ledger(ckpt_dir, ledger)
    return ledger


def pending_records(ckpt_dir: Path, committed: int) -> list[dict]:
    """Committed records (epoch <= committed) whose metric line was not printed yet."""
    ledger = read_ledger(ckpt_dir)
    return [r for r in ledger["records"] if ledger["emitted"] < r["epoch"] <= committed]


def mark_emitted(ckpt_dir: Path, epoch: int) -> None:
    ledger = read_ledger(ckpt_dir)
    if epoch > ledger["emitted"]:
        ledger["emitted"] = epoch
        write_ledger(ckpt_dir, ledger)


def emit_pending(ckpt_dir: Path, committed: int, wandb=None) -> list[dict]:
    """Step 3: print the committed epochs' lines not printed yet, mark them, then mirror them to W&B."""
    records = pending_records(ckpt_dir, committed)
    for r in records:
        emit(format_metric_line(r))
        mark_emitted(ckpt_dir, r["epoch"])
        if wandb is not None:
            wandb.log(r, step=r["epoch"])
    return records


def restore_committed(ckpt_dir: Path, suffix: str = ".committed.pt") -> None:
    """Undo a kill during final_eval's in-place rewrite: a torn last.pt/best.pt gets its committed copy back."""
    from .seals import trusted

    for copy in sorted(ckpt_dir.glob("*" + suffix)):
        target = ckpt_dir / (copy.name[: -len(suffix)] + ".pt")
        if trusted(copy, target.name) and checkpoint_state(target)[0] in {"none", "corrupt", "untrusted"}:
            log(f"{target.name} is unreadable (killed while it was rewritten): restoring the committed copy")
            os.replace(copy, target)
        else:
            copy.unlink()


def _csv_rows_upto(csv: Path, committed: int) -> tuple[list[str], bool]:
    lines = csv.read_text().splitlines()
    if not lines:
        return [], False
    keep, changed, seen = [lines[0]], False, set()
    for line in lines[1:]:
        try:
            epoch = int(float(line.split(",", 1)[0]))
        except ValueError:
            changed = True  # a torn last line (kill mid-append)
            continue
        if epoch > committed or epoch in seen:
            changed = True
            continue
        seen.add(epoch)
        keep.append(line)
    return keep, changed


def reconcile(ckpt_dir: Path, committed: int) -> None:
    """Make results.csv and the ledger agree with last.pt: `committed` epochs are done (ckpt["epoch"] + 1)."""
    csv = ckpt_dir / "results.csv"
    if csv.exists():
        keep, changed = _csv_rows_upto(csv, committed)
        if changed:
            log(f"results.csv: dropped rows beyond epoch {committed} (the checkpoint's), they will be redone")
            atomic_write(csv, "\n".join(keep) + "\n")
    ledger = read_ledger(ckpt_dir)
    records = [r for r in ledger["records"] if r["epoch"] <= committed]
    if len(records) != len(ledger["records"]) or ledger["emitted"] > committed:
        ledger["records"], ledger["emitted"] = records, min(ledger["emitted"], committed)
        write_ledger(ckpt_dir, ledger)


def reset(ckpt_dir: Path) -> None:
    """A fresh run must not inherit rows of an older one."""
    for name in ("results.csv", EPOCH_LEDGER, "yoloops-epochs.jsonl"):
        (ckpt_dir / name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- signals
class Signals:
    """SIGTERM: stop at the next safe point; never inside a checkpoint commit (`critical`).

    In a multi-GPU job the launching process only forwards SIGTERM to the torch.distributed launcher, which
    passes it to every rank; each rank runs this same handler.
    """

    def __init__(self):
        self.terminated = False
        self.critical = 0
        self.forward = False  # set while this process only waits for a DDP launcher (its child processes)

    def handler(self, signum, frame):
        self.terminated = True
        log("SIGTERM: stopping; the last completed epoch's checkpoint is kept")
        if self.forward:
            import psutil

            for child in psutil.Process().children():
                with contextlib.suppress(OSError, psutil.Error):
                    child.send_signal(signal.SIGTERM)
            return
        if not self.critical:
            raise Terminated()

    def check(self):
        if self.terminated and not self.critical:
            raise Terminated()

    def reset(self):
        self.terminated, self.critical, self.forward = False, 0, False

    def install(self):
        with contextlib.suppress(ValueError):  # only the main thread may install handlers
            return signal.signal(signal.SIGTERM, self.handler)
        return None


SIGNALS = Signals()  # one per process: the job's, or a DDP rank's
