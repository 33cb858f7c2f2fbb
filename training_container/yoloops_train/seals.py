"""A resume loads only checkpoints this job wrote.

last.pt and best.pt are torch pickles: loading one runs whatever it holds. The job records the sha256 of every
checkpoint it commits (trainer.save_model, before the rename; final_eval's in-place rewrite, after it) in
`<checkpoints>/yoloops-seals.json`, and `resume.checkpoint_state` loads a last.pt (and the job a best.pt) only
when its sha256 is recorded there. A checkpoint folder seeded with someone else's files, or a file swapped
after the job wrote it, is set aside (`<name>.untrusted`) and the job starts fresh. The last few hashes of each
name are kept, so a kill between recording and renaming still leaves the previous file trusted.

Same trust boundary as the rest of the checkpoint folder (there is no secret to sign with): this stops a file
the job did not write, not an attacker who can rewrite both the checkpoint and this record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

SEALS = "yoloops-seals.json"
KEEP = 3


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_seals(ckpt_dir: Path) -> dict[str, list[str]]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((Path(ckpt_dir) / SEALS).read_text())
        if isinstance(data, dict):
            return {str(k): [str(h) for h in v] for k, v in data.items() if isinstance(v, list)}
    return {}


def seal(ckpt_dir: Path, files: dict[str, Path]) -> None:
    """Record the sha256 of each file under the checkpoint name it is (or will be renamed to)."""
    if not files:
        return
    seals = read_seals(ckpt_dir)
    for name, path in files.items():
        digest = sha256(path)
        seals[name] = ([h for h in seals.get(name, []) if h != digest] + [digest])[-KEEP:]
    tmp = Path(ckpt_dir) / (SEALS + ".partial")
    with tmp.open("w") as f:
        f.write(json.dumps(seals))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, Path(ckpt_dir) / SEALS)


def trusted(path: Path, name: str | None = None) -> bool:
    """Whether this job recorded exactly this file's content under its name (or `name`: a kept copy)."""
    return path.is_file() and sha256(path) in read_seals(path.parent).get(name or path.name, [])
