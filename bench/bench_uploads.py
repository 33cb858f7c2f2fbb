"""Benchmark: 10,000 objects uploaded as a plain sync (no manifest, no version folder) on the local stack.

Prints the S3 trigger's invocations (SQS batches), the executions started (must be 1), the seconds from
the last object written to StartExecution against UploadQuietSeconds, and the validation time of that
unversioned upload against a bare listing of the same prefix (the workflow's ValidateDataset path).

Everything is real except AWS itself: moto S3 -> SQS, the emulated event source mapping (BatchSize
10000, MaximumBatchingWindowInSeconds), the trigger's DynamoDB sessions and delayed SQS checks, Step
Functions. Training is scripted (this measures the upload path, not YOLO).

    python bench/bench_uploads.py [--objects 10000] [--quiet 5] [--window 2] [--workers 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

IMAGE = b"\xff\xd8\xff\xe0" + b"\x00" * 92  # a stand-in JPEG: the validator never reads images
YAML = b"path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog, bird]\n"


def _files(n_objects: int) -> dict[str, bytes]:
    files = {"data.yaml": YAML}
    for i in range((n_objects - 1) // 2):
        split = "val" if i % 5 == 0 else "train"
        files[f"images/{split}/{i:06d}.jpg"] = IMAGE
        files[f"labels/{split}/{i:06d}.txt"] = f"{i % 3} 0.5 0.5 0.2 0.2\n".encode()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--quiet", type=int, default=5, help="UploadQuietSeconds of the local stack")
    parser.add_argument("--window", type=int, default=2, help="UploadBatchWindowSeconds of the local stack")
    parser.add_argument("--workers", type=int, default=16, help="parallel PUTs (aws s3 sync uses 10)")
    parser.add_argument("--repeat", type=int, default=3, help="validation/listing repetitions")
    parser.add_argument("--http", action="store_true",
                        help="PUT every object over HTTP, as a sync does (about 80 s for 10,000 here)")
    args = parser.parse_args()

    from yoloops_core.dataset import LABEL_SAMPLE, validate_s3_dataset
    from yoloops_core.models import DatasetRef

    from yoloops.local import LocalStack, ScriptedTrainingBackend, complete

    files = _files(args.objects)
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(workdir=Path(tmp), training=ScriptedTrainingBackend(),
                           parameters={"UploadQuietSeconds": str(args.quiet), "UploadBatchWindowSeconds": str(args.window),
                                       "LogLevel": "WARNING"},
                           function_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}).start()
        try:
            stack.training.then(complete({"mAP50": 0.5, "mAP50-95": 0.3}))
            s3, sfn = stack.client("s3"), stack.client("stepfunctions")
            bucket, sm = stack.outputs["ArtifactsBucketName"], stack.outputs["TrainingStateMachineArn"]
            prefix = "datasets/bench_sync/"
            t0 = time.perf_counter()
            if args.http:
                with ThreadPoolExecutor(args.workers) as pool:
                    list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=prefix + kv[0], Body=kv[1]),
                                  files.items()))
            else:
                # Straight into moto's S3 backend: the same ObjectCreated:Put events reach the queue, without
                # 10,000 HTTP round trips through one GIL (about 80 s here; --http measures that way).
                from moto.s3.models import s3_backends

                backend = s3_backends["123456789012"]["aws"]
                for key, body in files.items():
                    backend.put_object(bucket, prefix + key, body)
            last_put = datetime.now(UTC)
            print(f"uploaded {len(files)} objects in {time.perf_counter() - t0:.1f}s "
                  f"({'HTTP, ' + str(args.workers) + ' workers' if args.http else 'moto backend'})", flush=True)
            deadline = time.monotonic() + 600
            while not (runs := sfn.list_executions(stateMachineArn=sm)["executions"]):
                if time.monotonic() > deadline:
                    print("no execution started")
                    return 1
                time.sleep(0.1)
            started = runs[0]["startDate"]
            time.sleep(args.quiet + args.window + 2)  # anything late would have started by now
            runs = sfn.list_executions(stateMachineArn=sm)["executions"]
            invocations = [i for i in stack.lambdas.invocations if i.source == "sqs"]
            batches = [len(i.event["Records"]) for i in invocations]
            print(f"trigger invocations   : {len(invocations)} (SQS batch sizes {batches}, "
                  f"seconds {[round(i.duration_ms / 1000, 1) for i in invocations]})")
            print(f"executions started    : {len(runs)} ({', '.join(r['name'] for r in runs)})")
            print(f"last object -> StartExecution: {(started - last_put).total_seconds():.1f}s "
                  f"(UploadQuietSeconds {args.quiet}, batch window {args.window})")

            name = runs[0]["name"]
            request = json.loads(sfn.describe_execution(executionArn=runs[0]["executionArn"])["input"])
            dataset = DatasetRef.model_validate(request["dataset"])
            list_times, val_times = [], []
            report = None
            for _ in range(args.repeat):
                t = time.perf_counter()
                count = sum(len(p.get("Contents", [])) for p in
                            s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=dataset.key))
                list_times.append(time.perf_counter() - t)
                t = time.perf_counter()
                report = validate_s3_dataset(bucket, dataset, s3, label_sample=LABEL_SAMPLE)
                val_times.append(time.perf_counter() - t)
            lst, val = statistics.median(list_times), statistics.median(val_times)
            print(f"run {name}: dataset {dataset.key} ({count} objects), valid={report.valid if report else None}")
            print(f"bare listing          : median {lst:.2f}s")
            print(f"validate_s3_dataset   : median {val:.2f}s  ratio {val / lst:.2f}x (goal <= 2x)")
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
