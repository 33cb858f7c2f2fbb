"""`weights push`, `dataset push --weights`, `champion --download/--repair`, and manual champion changes
keeping the Model Registry's approvals in step, against a moto server over HTTP."""

from __future__ import annotations

import json
import uuid

import pytest
from yoloops_core.models import RunStatus
from yoloops_core.registry import ModelRegistry


@pytest.fixture
def models_stack(stack):
    """The CLI stack with its own registry namespace (NamePrefix), so tests never share groups."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    data = json.loads((stack.workdir / "stack.json").read_text())
    data["parameters"]["NamePrefix"] = prefix
    (stack.workdir / "stack.json").write_text(json.dumps(data))
    stack.registry = ModelRegistry(stack.client("sagemaker"), prefix)
    return stack


def _register(stack, dataset, run_id, status="PendingManualApproval"):
    arn = stack.registry.register(dataset=dataset, run_id=run_id, model_data_url="s3://b/k.tar.gz",
                                  image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/t:1", status=status,
                                  properties={})
    stack.store.update_run(run_id, model_package_arn=arn)
    return arn


def _status(stack, arn):
    return stack.registry.describe(arn)["ModelApprovalStatus"]


def test_weights_push_uploads_under_pretrained(models_stack, tmp_path):
    pt = tmp_path / "yolo12s.pt"
    pt.write_bytes(b"coco weights")
    result = models_stack.cli("weights", "push", str(pt))
    assert result.exit_code == 0, result.output
    assert "models/pretrained/yolo12s.pt" in result.stdout and "BaseWeights=yolo12s.pt" in result.stdout
    s3 = models_stack.client("s3")
    assert s3.get_object(Bucket=models_stack.bucket, Key="models/pretrained/yolo12s.pt")["Body"].read() == b"coco weights"
    assert models_stack.cli("weights", "push", str(pt), "--name", "coco/v2.pt").exit_code == 0
    assert s3.head_object(Bucket=models_stack.bucket, Key="models/pretrained/coco/v2.pt")
    bad = tmp_path / "notes.txt"
    bad.write_text("x")
    result = models_stack.cli("weights", "push", str(bad))
    assert result.exit_code == 1 and "not a .pt" in result.stderr
    result = models_stack.cli("weights", "push", str(pt), "--name", "../../x.pt")
    assert result.exit_code == 1 and "must name a .pt" in result.stderr


def test_dataset_push_weights_goes_into_the_manifest(models_stack, shapes_dir, tmp_path):
    result = models_stack.cli("dataset", "push", str(shapes_dir), "--name", "w", "--version", "v1",
                              "--weights", "yolo12s.pt")
    assert result.exit_code == 1 and "not found" in result.stderr  # checked before any upload
    s3 = models_stack.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket=models_stack.bucket, Prefix="datasets/w/")
    pt = tmp_path / "yolo12s.pt"
    pt.write_bytes(b"w")
    models_stack.cli("weights", "push", str(pt))
    result = models_stack.cli("dataset", "push", str(shapes_dir), "--name", "w", "--version", "v1",
                              "--weights", "yolo12s.pt", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads(s3.get_object(Bucket=models_stack.bucket, Key="datasets/w/v1/manifest.json")["Body"].read())
    assert manifest["weights"] == "yolo12s.pt"
    result = models_stack.cli("dataset", "push", str(shapes_dir), "--name", "w", "--version", "v2",
                              "--weights", "champion", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads(s3.get_object(Bucket=models_stack.bucket, Key="datasets/w/v2/manifest.json")["Body"].read())
    assert manifest["weights"] == "champion"
    result = models_stack.cli("dataset", "push", str(shapes_dir), "--name", "w", "--weights", "s3://elsewhere/x.pt")
    assert result.exit_code == 1 and "bucket 'elsewhere'" in result.stderr


def test_manual_promote_and_rollback_keep_registry_and_bundle_in_step(models_stack, tmp_path):
    st = models_stack
    ds = f"m{uuid.uuid4().hex[:6]}"
    for run_id, value in ((f"ds-{ds}-v1", 0.3), (f"ds-{ds}-v2", 0.5)):
        st.add_run(run_id, ds, RunStatus.PROMOTED, {"mAP50-95": value})
        st.client("s3").put_object(Bucket=st.bucket, Key=f"models/{ds}/versions/{run_id}/model.onnx", Body=b"onnx")
        assert st.store.put_champion_if_better(ds, run_id, "mAP50-95", value, {"mAP50-95": value},
                                               f"models/{ds}/versions/{run_id}/best.pt")
    v1, v2 = _register(st, ds, f"ds-{ds}-v1", "Rejected"), _register(st, ds, f"ds-{ds}-v2", "Approved")
    result = st.cli("champion", ds, "--repair")  # champion/ was never written: the repair publishes v2
    assert result.exit_code == 0, result.output
    assert "repaired" in result.stdout and "best.pt" in result.stdout
    assert st.cli("rollback", ds).exit_code == 0
    assert _status(st, v1) == "Approved" and _status(st, v2) == "Rejected"
    result = st.cli("champion", ds, "--download", str(tmp_path / "bundle"))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "bundle").iterdir())
    assert files == ["best.pt", "metrics.json", "model.onnx"]
    assert (tmp_path / "bundle" / "best.pt").read_bytes() == f"weights of ds-{ds}-v1".encode()
    assert st.cli("promote", f"ds-{ds}-v2").exit_code == 0
    assert _status(st, v1) == "Rejected" and _status(st, v2) == "Approved"
    data = json.loads(st.cli("champion", ds, "--json").stdout)
    assert sorted(data["bundle"]) == ["best.pt", "metrics.json", "model.onnx"]


def test_promote_of_a_run_without_any_model_is_refused_before_the_record_moves(models_stack):
    st = models_stack
    ds = f"n{uuid.uuid4().hex[:6]}"
    st.add_run(f"ds-{ds}-v1", ds, RunStatus.PROMOTED, {"mAP50-95": 0.3})
    st.store.put_champion_if_better(ds, f"ds-{ds}-v1", "mAP50-95", 0.3, {}, "k")
    st.store.create_minimal_run(f"ds-{ds}-v2", RunStatus.KEPT, "seeded", dataset=ds, metrics={"mAP50-95": 0.1},
                                job_names=[f"ds-{ds}-v2-a1"])
    result = st.cli("promote", f"ds-{ds}-v2")
    assert result.exit_code == 1 and "no model artifact" in result.stderr
    assert st.store.get_champion(ds)["run_id"] == f"ds-{ds}-v1"
