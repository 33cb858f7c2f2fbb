"""Backbone benchmark (not a test): handler cold-import times and state transitions per run.

    python bench/bench_backbone.py [--repeat 5] [--skip-workflow]

1. Cold import: each functions/<name>/app.py is imported in a fresh interpreter (what a Lambda cold
   start pays before the handler runs), best of N; goal <= 150 ms with powertools. A second figure adds
   `import boto3` (imported lazily by yoloops_core.aws on the first AWS call, so paid on the first
   invocation rather than at import).
2. State transitions: the real ASL on the local stack with a scripted SageMaker: a happy run, and runs
   that need one and two retries (spot MaxWaitTimeExceeded / CapacityError), counted from the execution
   history (one transition per state entered, as Step Functions bills).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_MS = 150.0

_PROBE = r"""
import importlib.util, sys, time
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
t1 = time.perf_counter()
if sys.argv[2] == "1":
    import boto3  # noqa: F401
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t0) * 1000)
"""


def cold_imports(repeat: int) -> list[tuple[str, float, float]]:
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "bench",
           "ARTIFACTS_BUCKET": "b", "RUNS_TABLE": "t", "NOTIFICATIONS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:x"}
    rows = []
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        imports, with_boto = [], []
        for _ in range(repeat):
            out = subprocess.run([sys.executable, "-c", _PROBE, str(app), "0"], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
            imports.append(float(out[0]))
            out = subprocess.run([sys.executable, "-c", _PROBE, str(app), "1"], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
            with_boto.append(float(out[1]))
        rows.append((app.parent.name, min(imports), min(with_boto)))
    return rows


def transitions() -> list[tuple[str, str, list[str]]]:
    from yoloops.local import LocalStack, ScriptedTrainingBackend, complete, fail, spot_max_wait_exceeded
    from yoloops.synth import generate_dataset

    metrics = {"mAP50": 0.8, "mAP50-95": 0.6}
    capacity = fail("CapacityError: Unable to provision requested ML compute capacity. Please retry using a "
                    "different ML instance type.")
    scenarios = {
        "happy (promoted)": [complete(metrics)],
        "1 retry (spot max wait)": [spot_max_wait_exceeded(), complete(metrics)],
        "2 retries (spot, capacity)": [spot_max_wait_exceeded(), capacity, complete(metrics)],
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "ds"
        generate_dataset(data, n_train=4, n_val=2, imgsz=64)
        stack = LocalStack(workdir=Path(tmp) / "stack", training=ScriptedTrainingBackend(),
                           parameters={"UploadQuietSeconds": "900"}).start()  # executions started by hand
        try:
            s3, sfn = stack.client("s3"), stack.client("stepfunctions")
            bucket = stack.outputs["ArtifactsBucketName"]
            for path in sorted(p for p in data.rglob("*") if p.is_file()):
                s3.upload_file(str(path), bucket, f"datasets/bench/v1/{path.relative_to(data).as_posix()}")
            for n, (label, outcomes) in enumerate(scenarios.items()):
                stack.training.then(*outcomes)
                request = {"dataset": {"name": "bench", "version": "v1"},
                           "trigger": {"source": "manual", "ref": "bench"}}
                arn = sfn.start_execution(stateMachineArn=stack.outputs["TrainingStateMachineArn"],
                                          name=f"bench-{n}", input=json.dumps(request))["executionArn"]
                status = stack.wait_for_execution(arn, timeout=120)["status"]
                events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
                states = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
                rows.append((label, status, states))
        finally:
            stack.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-workflow", action="store_true")
    args = parser.parse_args()

    print(f"Handler cold import (fresh interpreter, best of {args.repeat}; goal <= {GOAL_MS:.0f} ms)")
    print(f"  {'handler':<18} {'import ms':>10} {'+boto3 ms':>10}  verdict")
    worst = 0.0
    for name, ms, boto_ms in cold_imports(args.repeat):
        worst = max(worst, ms)
        print(f"  {name:<18} {ms:>10.1f} {boto_ms:>10.1f}  {'ok' if ms <= GOAL_MS else 'OVER GOAL'}")
    if not args.skip_workflow:
        print("\nState transitions per execution (states entered, from GetExecutionHistory)")
        for label, status, states in transitions():
            print(f"  {label:<28} {len(states):>3}  {status}")
            print(f"    {' > '.join(states)}")
    return 0 if worst <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
