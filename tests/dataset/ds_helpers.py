"""Small hand-written YOLO datasets, generated per test in tmp_path (a helper module, not a conftest:
tests/conftest.py owns that module name)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

from PIL import Image


def png(tag: str = "") -> bytes:
    """A 4x4 PNG whose bytes differ per tag: distinct images, as a real dataset has (equal bytes in val and
    train are a leak the validator reports)."""
    shade = zlib.crc32(tag.encode()) & 0xFFFFFF
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (shade >> 16, (shade >> 8) & 0xFF, shade & 0xFF)).save(buf, format="PNG")
    return buf.getvalue()


PNG = png()
BOX = "0 0.5 0.5 0.2 0.2\n"
POLY = "1 0.1 0.1 0.9 0.1 0.5 0.9\n"


def write(root: Path, rel: str, content: bytes | str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def ultralytics_dataset(root: Path, *, train: int = 4, val: int = 2, label: str = BOX,
                        yaml_text: str | None = None) -> Path:
    """images/<split> + labels/<split>, one box per image, classes cat/dog."""
    write(root, "data.yaml", yaml_text or "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n")
    for split, n in (("train", train), ("val", val)):
        for i in range(n):
            write(root, f"images/{split}/img{i}.png", png(f"{split}/{i}"))
            write(root, f"labels/{split}/img{i}.txt", label)
    return root


def roboflow_dataset(root: Path, *, train: int = 3, val: int = 2, label: str = BOX) -> Path:
    """Roboflow export: train/images + train/labels, YAML paths like ../train/images."""
    write(root, "data.yaml", "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n"
                             "nc: 2\nnames: ['cat', 'dog']\n")
    for split, n in (("train", train), ("valid", val), ("test", 1)):
        for i in range(n):
            write(root, f"{split}/images/{split}_{i}.jpg", png(f"{split}/{i}"))
            write(root, f"{split}/labels/{split}_{i}.txt", label)
    write(root, "README.roboflow.txt", "exported\n")
    return root


# ---------------------------------------------------------------- S3 helpers

BUCKET = "yoloops-artifacts-test"


class CountingS3:
    """Wraps a boto3 S3 client and records what the validator asks for."""

    def __init__(self, s3):
        self._s3 = s3
        self.meta = s3.meta
        self.gets: list[tuple[str, str | None]] = []
        self.paginations = 0

    def get_object(self, **kw):
        self.gets.append((kw["Key"], kw.get("Range")))
        return self._s3.get_object(**kw)

    def head_object(self, **kw):
        return self._s3.head_object(**kw)

    def get_paginator(self, name):
        self.paginations += 1
        return self._s3.get_paginator(name)


def upload_dir(s3, root: Path, prefix: str) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket=BUCKET, Key=prefix + path.relative_to(root).as_posix(), Body=path.read_bytes())


def comparable(report) -> dict:
    """What must agree across sources: everything but where the files are."""
    data = report.model_dump(exclude={"source", "summary"})  # both name the source
    for kind in ("errors", "warnings"):
        data[kind] = sorted((p["code"], p["message"]) for p in data[kind])
    return data
