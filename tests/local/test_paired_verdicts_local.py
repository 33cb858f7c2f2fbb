"""Like-for-like promotion on the local stack, driven with the `aws` CLI as a team would (issue 16).

One dataset, four uploads (`aws s3 sync` of a version folder, no manifest, no yoloops command), each really
trained by train.py on the CPU and judged by the workflow:

1. v1: 256 train images, a normal val split -> the first champion.
2. v2: 32 train images (a worse model) with an EASY val split (big objects), and a pickled
   `labels/train.cache` that would write a marker file if anything unpickled it -> trains normally, kept:
   on v2's own val images the champion scores higher; the marker never appears.
3. v3: 512 train images, a third class, a HARD val split (small objects) -> promoted: on the classes both
   models know it beats the champion on the same images, though its own number is not comparable with the
   champion's recorded one; the new class is listed.
4. v4 after `aws s3 rm` of the champion's weights -> judged on the recorded number, and Slack says it is not
   like-for-like.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import support

from yoloops.demo import DEMO_HYPERPARAMETERS, start_local_stack
from yoloops.synth import generate_dataset

pytestmark = pytest.mark.slow

DATASET = "robots"
# object side / image side: train splits use generate_dataset's default (NORMAL); EASY is its large end, HARD below it.
EASY, NORMAL, HARD = (0.28, 0.38), (0.18, 0.38), (0.12, 0.2)
TWO, THREE = ("circle", "square"), ("circle", "square", "triangle")


class _Marker:
    """A pickle payload: loading it writes the marker (what a hostile labels cache would do)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('unpickled')",))


def make_version(root: Path, *, n_train: int, val_size: tuple[float, float], classes, seed: int,
                 n_val: int = 48) -> Path:
    """Train images of the usual size; a val split drawn with its own object sizes (easier or harder)."""
    generate_dataset(root, n_train=n_train, n_val=0, imgsz=64, classes=classes, seed=seed)
    source = root.parent / f"{root.name}-val-source"
    generate_dataset(source, n_train=n_val, n_val=0, imgsz=64, classes=classes, seed=seed + 1000,
                     object_size=val_size)
    for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
        (root / kind / "val").mkdir(parents=True)
        for f in sorted((source / kind / "train").glob(f"*{suffix}")):
            shutil.move(str(f), root / kind / "val" / f.name.replace("train_", "val_"))
    shutil.rmtree(source)
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(classes))
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames:\n{names}")
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = start_local_stack(tmp_path_factory.mktemp("paired"), hyperparameters=dict(DEMO_HYPERPARAMETERS),
                           log_level="WARNING")
    yield st
    st.stop()


def aws(stack, *args: str) -> str:
    return support.aws_cli(stack, *args, timeout=300)


def upload(stack, folder: Path, version: str) -> dict:
    """`aws s3 sync` the folder as datasets/robots/<version>/, then wait for its run to end."""
    bucket = stack.outputs["ArtifactsBucketName"]
    machine = stack.outputs["TrainingStateMachineArn"]
    before = {e["name"] for e in json.loads(aws(stack, "stepfunctions", "list-executions",
                                                "--state-machine-arn", machine))["executions"]}
    aws(stack, "s3", "sync", str(folder), f"s3://{bucket}/datasets/{DATASET}/{version}/")
    deadline = time.monotonic() + 120
    while True:
        listed = json.loads(aws(stack, "stepfunctions", "list-executions", "--state-machine-arn", machine))
        new = [e for e in listed["executions"] if e["name"] not in before]
        if new:
            break
        assert time.monotonic() < deadline, f"the sync of {version} started no run"
        time.sleep(0.5)
    (execution,) = new
    stack.wait_for_execution(execution["executionArn"], timeout=900)
    stack.lambdas.wait_idle(30)
    described = json.loads(aws(stack, "stepfunctions", "describe-execution", "--execution-arn",
                               execution["executionArn"]))
    item = json.loads(aws(stack, "dynamodb", "get-item", "--table-name", stack.outputs["RunsTableName"],
                          "--key", json.dumps({"pk": {"S": f"RUN#{execution['name']}"}, "sk": {"S": "RUN"}})))
    assert described["status"] == "SUCCEEDED", described
    return {"run_id": execution["name"], "output": json.loads(described.get("output") or "{}"),
            "status": item["Item"]["status"]["S"]}


def verdict_of(stack, run_id: str) -> dict:
    bucket = stack.outputs["ArtifactsBucketName"]
    return json.loads(aws(stack, "s3", "cp", f"s3://{bucket}/models/{DATASET}/versions/{run_id}/verdict.json", "-"))


def val_row(verdict: dict, metric: str = "mAP50-95") -> dict:
    return next(r for r in verdict["table"] if r["split"] == "val" and r["metric"] == metric)


def slack_text(stack, run_id: str) -> str:
    return "\n".join(json.dumps(m) for m in stack.slack_messages if run_id in json.dumps(m))


def test_verdicts_compare_like_with_like(stack, tmp_path):
    # 1. the first champion
    v1 = upload(stack, make_version(tmp_path / "v1", n_train=256, val_size=NORMAL, classes=TWO, seed=11), "v1")
    assert v1["status"] == "PROMOTED", v1
    assert verdict_of(stack, v1["run_id"])["basis"] == "first"

    # 2. a worse model with an easier val split, and a hostile labels cache
    marker = tmp_path / "unpickled.marker"
    v2_dir = make_version(tmp_path / "v2", n_train=32, val_size=EASY, classes=TWO, seed=22)
    with (v2_dir / "labels" / "train.cache").open("wb") as fh:
        np.save(fh, np.array(_Marker(marker), dtype=object), allow_pickle=True)
    assert pickle.loads(pickle.dumps(_Marker(tmp_path / "probe")), fix_imports=True) is None  # the payload works
    assert (tmp_path / "probe").exists()
    v2 = upload(stack, v2_dir, "v2")
    verdict = verdict_of(stack, v2["run_id"])
    row = val_row(verdict)
    assert v2["status"] == "KEPT" and verdict["basis"] == "paired" and verdict["like_for_like"], verdict
    assert verdict["compared_with"] == v1["run_id"] and row["champion"] > row["challenger"], row
    assert not marker.exists(), "an uploaded labels cache was unpickled by the training job"
    assert "pickle_file_ignored" in json.dumps(v2["output"]), "the validator did not report the pickle file"
    assert "both scored on the same images" in slack_text(stack, v2["run_id"])

    # 3. a better model, a harder val split, one more class
    v3 = upload(stack, make_version(tmp_path / "v3", n_train=512, val_size=HARD, classes=THREE, seed=33), "v3")
    verdict = verdict_of(stack, v3["run_id"])
    assert v3["status"] == "PROMOTED" and verdict["basis"] == "paired", verdict
    assert verdict["shared_classes"] == list(TWO) and verdict["new_classes"] == ["triangle"]
    assert verdict["data_diff"]["classes_added"] == ["triangle"] and verdict["data_diff"]["val_new_share"] == 1.0
    row = val_row(verdict)
    assert row["challenger"] > row["champion"], row
    recorded = json.loads(aws(stack, "dynamodb", "get-item", "--table-name", stack.outputs["RunsTableName"], "--key",
                              json.dumps({"pk": {"S": f"RUN#{v1['run_id']}"}, "sk": {"S": "RUN"}})))
    v1_recorded = float(recorded["Item"]["metrics"]["M"]["mAP50-95"]["N"])
    print(json.dumps({"v1_recorded": v1_recorded, "v2_val": val_row(verdict_of(stack, v2["run_id"])),
                      "v3_val": row}))
    # Its own number on the hard split is below the champion's recorded one (v1's normal split): comparing
    # those two, as yoloops did before, would have kept the better model.
    assert row["challenger"] < v1_recorded, (row, v1_recorded)

    # 4. the champion's weights are gone: the recorded number decides, and the message says so
    bucket = stack.outputs["ArtifactsBucketName"]
    aws(stack, "s3", "rm", f"s3://{bucket}/models/{DATASET}/versions/{v3['run_id']}/best.pt")
    v4 = upload(stack, make_version(tmp_path / "v4", n_train=32, val_size=NORMAL, classes=THREE, seed=44), "v4")
    verdict = verdict_of(stack, v4["run_id"])
    assert verdict["basis"] == "recorded" and verdict["like_for_like"] is False, verdict
    assert "weights" in verdict["notes"][0] and "missing" in verdict["notes"][0]
    assert "NOT like-for-like" in slack_text(stack, v4["run_id"])
