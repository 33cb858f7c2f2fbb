"""dev and prod in one account and region (samconfig.toml's two stacks), on the local stack.

The same dataset pushed to both trains in both (SageMaker job names are unique per account and region, so
equal run ids must not mean equal job names), and one stack's watchdog leaves the other's running job
alone (it used to stop every InProgress job whose run id its own table did not hold).
"""

from __future__ import annotations

import json

import pytest
import support

from yoloops.local import LocalStack, ScriptedTrainingBackend, complete
from yoloops.synth import generate_dataset

pytestmark = pytest.mark.slow

METRICS = {"mAP50": 0.5, "mAP50-95": 0.3}


_wait = support.wait_for


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    st = LocalStack(workdir=tmp_path_factory.mktemp("local"), training=ScriptedTrainingBackend(),
                    stack_name="yoloops-dev", parameters={"NamePrefix": "yoloops-dev"})
    st.start()
    st.add_stack("yoloops-prod", {"NamePrefix": "yoloops-prod"})
    yield st
    st.stop()


def _push(stack: LocalStack, outputs: dict[str, str], root) -> None:
    from yoloops_core.dataset.manifest import build_manifest

    s3, bucket = stack.client("s3"), outputs["ArtifactsBucketName"]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"datasets/pallets/v1/{path.relative_to(root).as_posix()}")
    s3.put_object(Bucket=bucket, Key="datasets/pallets/v1/manifest.json",
                  Body=json.dumps(build_manifest(root, "pallets", "v1")).encode())


def _status(stack: LocalStack, outputs: dict[str, str], run_id: str) -> str | None:
    item = stack.client("dynamodb").get_item(TableName=outputs["RunsTableName"],
                                             Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}}).get("Item")
    return item["status"]["S"] if item else None


def test_dev_and_prod_train_the_same_dataset_and_leave_each_others_jobs_alone(stacks, tmp_path):
    dev, prod = stacks.outputs, stacks.other_stacks["yoloops-prod"].outputs
    assert stacks.stack_code() != stacks.stack_code("yoloops-prod")
    root = tmp_path / "ds"
    generate_dataset(root, n_train=3, n_val=2, imgsz=64, seed=5)
    stacks.training.then(complete(METRICS, hold=True), complete(METRICS, hold=True))  # each trains until released
    _push(stacks, dev, root)
    _push(stacks, prod, root)

    jobs = _wait(lambda: (lambda js: js if len(js) == 2 else None)(
        [j for j in stacks.training.jobs.values() if j.secondary == "Training"]), what="both jobs to train")
    rejected = [r for r in stacks.training.requests if r["TrainingJobName"] not in stacks.training.jobs]
    assert not rejected, "a CreateTrainingJob was refused (job name taken by the other stack)"
    # yoloops:stack tag -> job name
    by_stack = {next(t["Value"] for t in j.request["Tags"] if t["Key"] == "yoloops:stack"): j.name for j in jobs}
    assert set(by_stack) == {"yoloops-dev", "yoloops-prod"}
    run_id = by_stack["yoloops-dev"].removesuffix(f"-{stacks.stack_code()}-a1")
    assert by_stack == {"yoloops-dev": stacks.job_name(run_id),  # same bytes: the same run id in both
                        "yoloops-prod": stacks.job_name(run_id, stack_name="yoloops-prod")}

    # dev's run ends first; prod's job of the same run id still trains. dev's watchdog sweeps: to dev that run
    # is finished, so a job of it still running would be an orphan, but prod's job is not dev's to stop.
    stacks.training.release(by_stack["yoloops-dev"])
    assert _wait(lambda: _status(stacks, dev, run_id) in ("PROMOTED", "FAILED") and _status(stacks, dev, run_id),
                 what="dev's run to finish") == "PROMOTED"
    result, error = stacks.lambdas.invoke(stacks.function_name("WatchdogFunction"), {"source": "aws.events"})
    assert error is None, error
    assert result["orphan_jobs_stopped"] == [] and result["foreign_jobs_skipped"] == 1
    assert stacks.training.jobs[by_stack["yoloops-prod"]].status == "InProgress"

    stacks.training.release(by_stack["yoloops-prod"])
    assert _wait(lambda: _status(stacks, prod, run_id) in ("PROMOTED", "FAILED") and _status(stacks, prod, run_id),
                 what="prod's run to finish") == "PROMOTED"
