"""Benchmark: a 100,000-object unversioned upload closes once, its listing paged across invocations.

moto's S3 and DynamoDB in-process (`mock_aws`), the real trigger code (yoloops_core.uploads: handle_batch,
sessions in DynamoDB, the real page lister of yoloops_core.upload_aws against moto's ListObjectsV2), and
an emulated Lambda clock: each invocation has `--timeout` seconds (the S3TriggerFunction's Timeout is 120),
counted from its start, and the listing stops with 20 s left and carries on in a check of delay 0.
Objects go straight into moto's backend (no HTTP), their S3 events reach handle_batch in SQS batches of
10,000 (the event source mapping's BatchSize). Prints: invocations and pages of the close, executions
started (must be 1), the close's total listing time, and the same prefix listed in one go (the baseline).

    python bench/bench_upload_close.py [--objects 100000] [--timeout 120] [--margin 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "yoloops"), str(ROOT / "tests"), str(ROOT / "tests" / "triggers")]
for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
    os.environ.setdefault(key, value)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

BUCKET = "bench-uploads"
TABLE = "bench-runs"
PREFIX = "datasets/big/"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=120.0, help="Lambda timeout of one invocation (s)")
    parser.add_argument("--margin", type=float, default=20.0, help="seconds left when the listing stops")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the one-go listing (on moto it costs as long as the close itself)")
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)
    import boto3
    import support
    from moto import mock_aws
    from moto.s3.models import s3_backends
    from upload_helpers import FakeSfn, Recorder, batch, events_batch, s3_record, sqs_message
    from yoloops_core.runs import start_run
    from yoloops_core.upload_sessions import SessionStore
    from yoloops_core.uploads import UploadDeps, handle_batch

    with mock_aws():
        ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
        support.create_runs_table(ddb, TABLE)
        s3.create_bucket(Bucket=BUCKET)
        backend = s3_backends["123456789012"]["aws"]
        t0 = time.perf_counter()
        keys = [f"{PREFIX}data.yaml"] + [f"{PREFIX}{kind}/train/{i:06d}.{ext}"
                                          for i in range((args.objects - 1) // 2)
                                          for kind, ext in (("images", "jpg"), ("labels", "txt"))]
        for i, key in enumerate(keys):
            body = b"names: [a]\n" if key.endswith(".yaml") else b"x" + i.to_bytes(4, "big")
            backend.put_object(BUCKET, key, body)
        print(f"{len(keys)} objects written into moto's S3 in {time.perf_counter() - t0:.1f} s", flush=True)

        def list_page(prefix, token):
            kwargs = {"Bucket": BUCKET, "Prefix": prefix} | ({"ContinuationToken": token} if token else {})
            page = s3.list_objects_v2(**kwargs)
            out = [(o["Key"], int(o["Size"]), o["ETag"].strip('"')) for o in page.get("Contents", [])]
            return out, page.get("NextContinuationToken") if page.get("IsTruncated") else None

        def list_prefix(prefix):
            return [e for p in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                    for e in [(o["Key"], o["Size"], o["ETag"].strip('"')) for o in p.get("Contents", [])]]

        invocation = {"start": time.monotonic(), "pages": 0}
        rec, sfn, clock = Recorder(), FakeSfn(), {"t": datetime(2026, 12, 1, tzinfo=UTC)}

        def counted_page(prefix, token):
            invocation["pages"] += 1
            return list_page(prefix, token)

        deps = UploadDeps(
            sessions=SessionStore(TABLE, ddb), list_prefix=list_prefix, send_checks=rec.send_checks,
            start=lambda req, run_id: start_run(req, run_id, "arn:aws:states:us-east-1:123456789012:stateMachine:x",
                                                sfn),
            notify=rec.notifications.append, record_version=lambda ds, at: None, quiet_seconds=120, bucket=BUCKET,
            now=lambda: clock["t"], list_page=counted_page, listing_margin_s=args.margin,
            time_left=lambda: args.timeout - (time.monotonic() - invocation["start"]))

        # The upload's events, as the event source mapping hands them over (batches of 10,000).
        t0 = time.perf_counter()
        records = [s3_record(k, at=clock["t"] + timedelta(microseconds=i), bucket=BUCKET) for i, k in enumerate(keys)]
        for i in range(0, len(records), 10_000):
            invocation["start"] = time.monotonic()
            handle_batch(events_batch(records[i:i + 10_000]), deps)  # one message per S3 event
        print(f"{(len(records) + 9_999) // 10_000} event batches folded in {time.perf_counter() - t0:.1f} s; "
              f"{len(rec.checks)} delayed checks", flush=True)
        checks = [c for c, _ in rec.checks][-1:]  # SQS delivers all; only the newest generation's can close
        rec.checks.clear()
        clock["t"] += timedelta(seconds=121)

        t0 = time.perf_counter()
        invocations, per_invocation = 0, []
        while checks:
            invocation.update(start=time.monotonic(), pages=0)
            out = handle_batch(batch(*(sqs_message(c) for c in checks)), deps)
            assert out == {"batchItemFailures": []}, out
            invocations += 1
            per_invocation.append((invocation["pages"], time.monotonic() - invocation["start"]))
            checks = [c for c, _ in rec.checks]
            rec.checks.clear()
        close_s = time.perf_counter() - t0
        session = SessionStore(TABLE, ddb).get(PREFIX)
        [body] = sfn.executions.values()
        objects = json.loads(body)["trigger"]["detail"]["objects"]

        baseline, baseline_s = 0, 0.0
        if not args.no_baseline:
            t0 = time.perf_counter()
            baseline = len(list_prefix(PREFIX))
            baseline_s = time.perf_counter() - t0

    pages = sum(p for p, _ in per_invocation)
    print(f"close: {invocations} invocation(s) of <= {args.timeout:.0f} s (margin {args.margin:.0f} s), "
          f"{pages} pages, {close_s:.1f} s in all; longest invocation {max(s for _, s in per_invocation):.1f} s")
    print("  per invocation (pages, s): " + ", ".join(f"({p}, {s:.1f})" for p, s in per_invocation))
    print(f"executions started: {len(sfn.executions)} (objects in the run's trigger detail: {objects}); "
          f"session {session.status}, done={session.done}")
    if baseline:
        print(f"baseline: one paginated listing of the same {baseline} objects: {baseline_s:.1f} s; "
              f"close / baseline = {close_s / baseline_s:.2f}")
    print(f"per 1,000 objects listed by the close: {1000 * close_s / max(objects, 1):.2f} s on moto")
    return 0 if len(sfn.executions) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
