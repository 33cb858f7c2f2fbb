"""Benchmark: one 10,000-object dataset upload -> exactly 1 trigger invocation and 1 execution.

Every uploaded object produces an ObjectCreated notification; the template's notification filter
(read from template.yaml's S3TriggerFunction events, else yoloops_core.s3_trigger.NOTIFICATION_RULES)
decides which reach the Lambda; the real handler runs for those against moto (bucket, table, topic and
a state machine made from the real ASL, not executed). The manifest event is then delivered twice more
(S3 is at-least-once).

    python bench/bench_s3_trigger.py [--objects 10000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote_plus, unquote_plus

ROOT = Path(__file__).resolve().parents[1]
# s3_helpers (and the tests' support module it uses): moto resources shaped like the template
sys.path[:0] = [str(ROOT / "tests" / "triggers"), str(ROOT / "tests")]

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from s3_helpers import (  # noqa: E402
    BUCKET,
    TABLE,
    create_runs_table,
    create_state_machine,
    load_handler,
    record_event,
    template_notification_rules,
)


class _Context:
    function_name = "s3-trigger"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:s3-trigger"
    aws_request_id = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    args = parser.parse_args()
    for k, v in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                 "POWERTOOLS_LOG_LEVEL": "WARNING"}.items():
        os.environ[k] = v

    from yoloops_core.s3_trigger import NOTIFICATION_EVENTS, NOTIFICATION_RULES, matches_notification_filter

    template_rules = template_notification_rules()
    if template_rules:
        rules = tuple((p, s) for p, s, _ in template_rules)
        source = "template.yaml S3TriggerFunction"
        assert all(ev == NOTIFICATION_EVENTS for _p, _s, ev in template_rules), template_rules
    else:
        rules, source = NOTIFICATION_RULES, "yoloops_core.s3_trigger.NOTIFICATION_RULES (template has none)"

    with mock_aws():
        s3, sfn, ddb, sns = (boto3.client(n) for n in ("s3", "stepfunctions", "dynamodb", "sns"))
        s3.create_bucket(Bucket=BUCKET)
        arn = create_state_machine(sfn)
        create_runs_table(ddb)
        topic = sns.create_topic(Name="yoloops-notifications")["TopicArn"]
        os.environ.update(ARTIFACTS_BUCKET=BUCKET, RUNS_TABLE=TABLE, NOTIFICATIONS_TOPIC_ARN=topic,
                          STATE_MACHINE_ARN=arn)
        app = load_handler()

        prefix = "datasets/pallets/2026-11-28/"
        keys = ["data.yaml"]
        n_images = (args.objects - 2) // 2
        for i in range(n_images):
            split = "val" if i % 5 == 0 else "train"
            keys += [f"images/{split}/pallet {i:05d}.jpg", f"labels/{split}/pallet {i:05d}.txt"]
        keys = [prefix + k for k in keys] + [prefix + "manifest.json"]  # the manifest is written last

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:  # the data objects in parallel, then the marker
            list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=b"x"), keys[:-1]))
        s3.put_object(Bucket=BUCKET, Key=keys[-1], Body=b"{}")
        upload_s = time.perf_counter() - t0

        events = [record_event(quote_plus(k, safe="/"), sequencer=f"{i:016X}") for i, k in enumerate(keys)]
        events += [events[-1], events[-1]]  # at-least-once: the manifest notification twice more
        t0 = time.perf_counter()
        invocations, outcomes = 0, []
        for event in events:
            if not matches_notification_filter(unquote_plus(event["Records"][0]["s3"]["object"]["key"]), rules):
                continue
            invocations += 1
            outcomes += app.lambda_handler(event, _Context())["outcomes"]
        handle_s = time.perf_counter() - t0
        executions = sfn.list_executions(stateMachineArn=arn)["executions"]

    unique_events = len(keys)
    print(f"filter rules from     : {source}: {rules}")
    print(f"objects uploaded      : {len(keys)} (upload {upload_s:.1f}s in moto)")
    print(f"ObjectCreated events  : {len(events)} ({unique_events} objects + 2 duplicate manifest deliveries)")
    print(f"trigger invocations   : {invocations} ({invocations - 2} for distinct objects)")
    print(f"handler outcomes      : {[o['action'] for o in outcomes]}")
    print(f"executions started    : {len(executions)} {[e['name'] for e in executions]}")
    print(f"handler time          : {handle_s * 1000:.0f} ms total")
    ok = invocations - 2 == 1 and len(executions) == 1
    print("RESULT                :", "OK: 1 invocation-worthy event, 1 execution" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
