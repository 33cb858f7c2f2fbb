"""Benchmark: validating a YOLO dataset in S3 vs a bare paginated listing of the same prefix.

Goal (issue 3): validate_s3_dataset <= 2x the listing. Moto runs in server mode (ThreadedMotoServer on a
free 127.0.0.1 port) in a child process, so the client threads measured here do not share a GIL with
the server. The dataset is put into the server's backend directly (fast setup: 100k HTTP PUTs would
take minutes and are not what is measured); every measured call goes over HTTP.

    python bench/bench_dataset_validation.py --images 50000 [--zip]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing as mp
import socket
import statistics
import time
import zipfile

BUCKET = "yoloops-bench"
ACCOUNT = "123456789012"
IMAGE = b"\xff\xd8\xff\xe0" + b"\x00" * 92  # a tiny stand-in for a JPEG: never read by the validator


def _files(n_images: int) -> dict[str, bytes]:
    files = {"data.yaml": b"path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog, bird]\n"}
    for i in range(n_images):
        split = "val" if i % 5 == 0 else "train"
        files[f"images/{split}/img{i:06d}.jpg"] = IMAGE
        if i % 20:  # 5% backgrounds
            rows = "".join(f"{(i + r) % 3} 0.{(i + r) % 9 + 1} 0.5 0.1 0.2\n" for r in range(1 + i % 3))
            files[f"labels/{split}/img{i:06d}.txt"] = rows.encode()
    manifest = {"dataset": "bench", "version": "v1", "created_at": "2026-11-28T00:00:00Z",
                "files": [{"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                          for p, b in sorted(files.items())]}
    files["manifest.json"] = json.dumps(manifest).encode()
    return files


def _serve(port: int, n_images: int, with_zip: bool, ready) -> None:
    import logging

    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request costs CPU

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    backend = s3_backends[ACCOUNT]["aws"]
    backend.create_bucket(BUCKET, "us-east-1")
    files = _files(n_images)
    for path, body in files.items():
        backend.put_object(BUCKET, f"datasets/bench/v1/{path}", body)
    if with_zip:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, body in files.items():
                zf.writestr(path, body)
        backend.put_object(BUCKET, "datasets/bench/v1.zip", buf.getvalue())
    ready.put(len(files))
    while True:
        time.sleep(3600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--zip", action="store_true", help="also validate the same dataset as one .zip")
    args = parser.parse_args()

    import os

    import boto3
    from botocore.config import Config

    port = _free_port()
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    t0 = time.perf_counter()
    server = ctx.Process(target=_serve, args=(port, args.images, args.zip, ready), daemon=True)
    server.start()
    n_objects = ready.get(timeout=900)
    print(f"setup: {n_objects} objects ({args.images} images) in {time.perf_counter() - t0:.1f}s")

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}",
                      config=Config(max_pool_connections=32, retries={"max_attempts": 3}))
    from yoloops_core.dataset import validate_s3_dataset
    from yoloops_core.models import DatasetRef

    def listing() -> int:
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="datasets/bench/v1/"):
            count += len(page.get("Contents", []))
        return count

    list_times, validate_times, zip_times = [], [], []
    report = zreport = None
    for _ in range(args.repeat):
        t = time.perf_counter()
        assert listing() == n_objects
        list_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        report = validate_s3_dataset(BUCKET, DatasetRef(name="bench", version="v1"), s3)
        validate_times.append(time.perf_counter() - t)
        if args.zip:
            t = time.perf_counter()
            zreport = validate_s3_dataset(BUCKET, DatasetRef(name="bench", version="v1", format="zip"), s3)
            zip_times.append(time.perf_counter() - t)
    server.terminate()

    assert report is not None and report.valid, report.summary_text() if report else "no report"
    lst, val = statistics.median(list_times), statistics.median(validate_times)
    print(report.summary_text())
    print(f"bare listing         : median {lst:.2f}s  (runs: {', '.join(f'{x:.2f}' for x in list_times)})")
    print(f"validate_s3_dataset  : median {val:.2f}s  (runs: {', '.join(f'{x:.2f}' for x in validate_times)})")
    print(f"ratio validate/list  : {val / lst:.2f}x  (goal <= 2.00x) -> {'OK' if val / lst <= 2 else 'OVER'}")
    if args.zip and zreport is not None:
        assert zreport.valid, zreport.summary_text()
        zt = statistics.median(zip_times)
        print(f"validate zip (ranged): median {zt:.2f}s  ratio to listing {zt / lst:.2f}x")


if __name__ == "__main__":
    main()
