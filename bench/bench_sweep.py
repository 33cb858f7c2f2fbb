"""Benchmark: a sweep of N jobs, P at a time, against the same N settings as N runs in a row, on the local stack.

Everything is real except AWS itself: the sweep is `yoloops sweep` (statemachine/sweep.asl.json, the local tuner
running the real training container as processes), and the runs in a row are N executions of the training
workflow, each started when the previous one ended, with exactly the hyperparameters the sweep's jobs drew.
Both include validation, the budget gate, training, evaluation and the verdict; the wall time of each is
from StartExecution to the execution's end. On a CPU the parallel jobs share cores, so the speed-up is
below P; on SageMaker each job has its own instance.

    python bench/bench_sweep.py [--jobs 4] [--parallel 2] [--epochs 1] [--n-train 24]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=24)
    args = parser.parse_args()

    from typer.testing import CliRunner

    from yoloops.cli import app
    from yoloops.demo import start_local_stack
    from yoloops.synth import generate_dataset

    hp = {"model": "yoloops-tiny.yaml", "epochs": str(args.epochs), "imgsz": "64", "batch": "8", "workers": "0",
          "warmup_epochs": "0", "mosaic": "0", "optimizer": "SGD"}
    runner = CliRunner()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        stack = start_local_stack(work / "stack", hyperparameters=hp, checkpoint_sync_s=0.5,
                                  parameters={"UploadQuietSeconds": "900"}, log_level="WARNING")
        try:
            def cli(*a: str):
                result = runner.invoke(app, ["--local", str(stack.workdir), *a], catch_exceptions=False)
                if result.exit_code:
                    raise SystemExit(result.output)
                return result

            generate_dataset(work / "shapes", n_train=args.n_train, n_val=8, imgsz=64, seed=4)
            cli("dataset", "push", str(work / "shapes"), "--name", "bench", "--version", "v1", "--wait", "--json")

            t0 = time.monotonic()
            body = json.loads(cli("sweep", "bench@v1", "--param", "lr0=0.001..0.05:log", "--param", "imgsz=64,96",
                                  "--max-jobs", str(args.jobs), "--parallel", str(args.parallel),
                                  "--strategy", "random", "--json").stdout)
            sweep = stack.wait_for_execution(body["execution_arn"], timeout=3600)
            sweep_s = time.monotonic() - t0
            if sweep["status"] != "SUCCEEDED":
                raise SystemExit(f"sweep {body['run_id']} ended {sweep['status']}")
            [tuning] = stack.tuner.jobs.values()
            settings = [tuning.tuned[n] for n in tuning.training_jobs]
            job_s = [_seconds(stack.training.describe_training_job(n)) for n in tuning.training_jobs]

            sfn, arn = stack.client("stepfunctions"), stack.outputs["TrainingStateMachineArn"]
            t1 = time.monotonic()
            seq_job_s = []
            for i, tuned in enumerate(settings, start=1):
                request = {"dataset": {"name": "bench", "version": "v1"}, "hyperparameters": tuned,
                           "trigger": {"source": "manual", "ref": "bench/bench_sweep.py"}}
                run_id = f"cli-bench-seq{i}-{int(time.time())}"
                ex = sfn.start_execution(stateMachineArn=arn, name=run_id, input=json.dumps(request))
                desc = stack.wait_for_execution(ex["executionArn"], timeout=3600)
                if desc["status"] != "SUCCEEDED":
                    raise SystemExit(f"run {run_id} ended {desc['status']}")
                seq_job_s += [_seconds(stack.training.describe_training_job(n)) for n in stack.training.jobs
                              if n.startswith(run_id)]
            seq_s = time.monotonic() - t1
        finally:
            stack.stop()

    print(f"settings: {args.jobs} jobs, lr0 0.001..0.05 (log) x imgsz {{64, 96}}, {args.epochs} epoch(s), "
          f"{args.n_train} train images, ProcessTrainingBackend on this machine's CPU")
    print(f"sweep ({args.parallel} at a time): {sweep_s:.1f} s wall; jobs trained {sum(job_s):.1f} s in all "
          f"(mean {sum(job_s) / len(job_s):.1f} s)")
    print(f"{args.jobs} runs in a row:        {seq_s:.1f} s wall; jobs trained {sum(seq_job_s):.1f} s in all "
          f"(mean {sum(seq_job_s) / max(len(seq_job_s), 1):.1f} s)")
    print(f"sweep / runs in a row: {sweep_s / seq_s:.2f} (runs in a row take {seq_s / sweep_s:.2f}x the sweep's time)")
    return 0


def _seconds(desc: dict) -> float:
    return (desc["TrainingEndTime"] - desc["TrainingStartTime"]) / 1000.0


if __name__ == "__main__":
    raise SystemExit(main())
