"""Benchmark: validating a YOLO dataset in S3 vs a bare paginated listing of the same prefix.

Goal (issue 3): validate_s3_dataset <= 2x the listing. Two copies of the dataset, each in its own
bucket (moto's listing time grows with the bucket, so each is compared with its own listing):
- "push": the manifest `dataset push` writes (build_manifest's entries: md5 + inline label texts), so
  validation needs one GET (the manifest) where the listing's ETags prove the inline texts;
- "sync": the files as `aws s3 sync` would put them plus a minimal manifest (path/size/sha256, the
  older format): no inline texts;
- "bare": the files as `aws s3 sync` of an export puts them, no manifest at all (an unversioned upload).
Without inline texts the Lambda reads only a sample of LABEL_SAMPLE labels (the training job checks all
before its first epoch); `--full-labels` reads every label, one GET each, as validation did before.
Moto runs in server mode (ThreadedMotoServer on a
free 127.0.0.1 port) in a child process, so the client threads measured here do not share a GIL with
the server. The dataset is put into the server's backend directly (fast setup: 100k HTTP PUTs would
take minutes and are not what is measured); every measured call goes over HTTP.

    python bench/bench_dataset_validation.py --images 50000 [--modes push,sync,bare] [--zip] [--full-labels]
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

BUCKETS = {"push": "yoloops-bench-push", "sync": "yoloops-bench-sync", "bare": "yoloops-bench-bare"}
ACCOUNT = "123456789012"
IMAGE = b"\xff\xd8\xff\xe0" + b"\x00" * 92  # a tiny stand-in for a JPEG: never read by the validator


def _files(n_images: int, mode: str) -> dict[str, bytes]:
    files = {"data.yaml": b"path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog, bird]\n"}
    for i in range(n_images):
        split = "val" if i % 5 == 0 else "train"
        files[f"images/{split}/img{i:06d}.jpg"] = IMAGE
        if i % 20:  # 5% backgrounds
            rows = "".join(f"{(i + r) % 3} 0.{(i + r) % 9 + 1} 0.5 0.1 0.2\n" for r in range(1 + i % 3))
            files[f"labels/{split}/img{i:06d}.txt"] = rows.encode()
    if mode == "bare":
        return files
    if mode == "push":  # exactly the entries (and JSON layout) `dataset push` uploads
        from yoloops_core.dataset.manifest import manifest_entry

        entries = [manifest_entry(p, b) for p, b in sorted(files.items())]
    else:
        entries = [{"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                   for p, b in sorted(files.items())]
    manifest = {"dataset": "bench", "version": "v1", "created_at": "2026-11-28T00:00:00Z", "files": entries}
    files["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    return files


def _serve(port: int, n_images: int, modes: list[str], with_zip: bool, ready) -> None:
    import logging

    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request costs CPU

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    backend = s3_backends[ACCOUNT]["aws"]
    counts = {}
    for mode in modes:
        bucket = BUCKETS[mode]
        backend.create_bucket(bucket, "us-east-1")
        files = _files(n_images, mode)
        for path, body in files.items():
            backend.put_object(bucket, f"datasets/bench/v1/{path}", body)  # single-part: ETag = MD5
        if with_zip:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for path, body in files.items():
                    zf.writestr(path, body)
            backend.put_object(bucket, "datasets/bench/v1.zip", buf.getvalue())
        counts[mode] = len(files)
    ready.put(counts)
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
    parser.add_argument("--modes", default="push,sync,bare",
                        help="push (inline-text manifest), sync (manifest without texts), bare (no manifest)")
    parser.add_argument("--full-labels", action="store_true",
                        help="read every label in the Lambda (label_sample=None), as before the sampled check")
    parser.add_argument("--zip", action="store_true", help="also validate the same dataset as one .zip")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(BUCKETS):
        parser.error(f"--modes must name some of {', '.join(BUCKETS)}")

    import os

    import boto3
    from botocore.config import Config

    port = _free_port()
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    t0 = time.perf_counter()
    server = ctx.Process(target=_serve, args=(port, args.images, modes, args.zip, ready), daemon=True)
    server.start()
    n_objects = ready.get(timeout=1800)
    print(f"setup: {n_objects} objects per bucket ({args.images} images) in {time.perf_counter() - t0:.1f}s")

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}",
                      config=Config(max_pool_connections=32, retries={"max_attempts": 3}))
    from yoloops_core.dataset import LABEL_SAMPLE, validate_s3_dataset
    from yoloops_core.models import DatasetRef

    gets = {"n": 0}

    def count_get(**_kw) -> None:
        gets["n"] += 1

    s3.meta.events.register("before-call.s3.GetObject", count_get)

    def listing(bucket: str) -> int:
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="datasets/bench/v1/"):
            count += len(page.get("Contents", []))
        return count

    results = []
    for mode in modes:
        bucket = BUCKETS[mode]
        list_times, validate_times, zip_times, get_counts = [], [], [], []
        report = zreport = None
        for _ in range(args.repeat):
            t = time.perf_counter()
            assert listing(bucket) == n_objects[mode]
            list_times.append(time.perf_counter() - t)
            gets["n"] = 0
            t = time.perf_counter()
            report = validate_s3_dataset(bucket, DatasetRef(name="bench", version="v1"), s3,
                                         label_sample=None if args.full_labels else LABEL_SAMPLE)
            validate_times.append(time.perf_counter() - t)
            get_counts.append(gets["n"])
            if args.zip:
                t = time.perf_counter()
                zreport = validate_s3_dataset(bucket, DatasetRef(name="bench", version="v1", format="zip"), s3)
                zip_times.append(time.perf_counter() - t)
        assert report is not None and report.valid, report.summary_text() if report else "no report"
        if mode == modes[0]:
            print(report.summary_text())
        lst, val = statistics.median(list_times), statistics.median(validate_times)
        print(f"[{mode}] bare listing         : median {lst:.2f}s  (runs: {', '.join(f'{x:.2f}' for x in list_times)})")
        print(f"[{mode}] validate_s3_dataset  : median {val:.2f}s  (runs: {', '.join(f'{x:.2f}' for x in validate_times)})"
              f"  GETs per validation: {get_counts[-1]}")
        print(f"[{mode}] ratio validate/list  : {val / lst:.2f}x  (goal <= 2.00x) -> {'OK' if val / lst <= 2 else 'OVER'}")
        if args.zip and zreport is not None:
            assert zreport.valid, zreport.summary_text()
            zt = statistics.median(zip_times)
            print(f"[{mode}] validate zip (ranged): median {zt:.2f}s  ratio to listing {zt / lst:.2f}x")
        results.append((mode, lst, val))
    server.terminate()
    print("summary: " + "; ".join(f"{m}: list {lst:.2f}s, validate {val:.2f}s = {val / lst:.2f}x"
                                  for m, lst, val in results))


if __name__ == "__main__":
    main()
