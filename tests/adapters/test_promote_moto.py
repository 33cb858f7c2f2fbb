"""Promote against moto: the bundle, the conditional champion write, copy failures, repair, the registry."""

from __future__ import annotations

import fnmatch
import json

import pytest
from yoloops_core.models import RunContext
from yoloops_core.promote import (
    PromoteEvent,
    PromotionCopyFailed,
    champion_files_match,
    list_files,
    manual_promote,
    promote,
    repair_champion,
    rollback,
)
from yoloops_core.registry import ModelRegistry, group_name
from yoloops_core.store import RunStore

from yoloops.local.training import model_archive

BUNDLE = {"best.pt": b"W", "model.onnx": b"onnx", "best.torchscript": b"ts", "model.json": b"{}",
          "DEPLOY.md": b"# deploy", "best_openvino_model/best.xml": b"<xml/>",
          "best_openvino_model/best.bin": b"bin", "weights/last.pt": b"state", "metrics.json": b'{"mAP50-95": 1}'}


class FlakyS3:
    """The real (moto) S3 client, with copy_object failing the first `failures` calls."""

    def __init__(self, s3, failures: int) -> None:
        self._s3, self.failures, self.copies = s3, failures, 0

    def copy_object(self, **kwargs):
        self.copies += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("connection reset by peer")
        return self._s3.copy_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._s3, name)


@pytest.fixture
def env(aws):
    s3 = aws.client("s3")
    store = RunStore(aws.table)
    registry = ModelRegistry(aws.client("sagemaker"), "yoloops-test")
    return type("Env", (), {"s3": s3, "store": store, "registry": registry, "bucket": aws.bucket})


def _run(env, event, run_id, value, files=None, registry=True):
    ev = event("stepfn_promote_better.json")
    ev["run"] = dict(ev["run"], run_id=run_id)
    uri = f"s3://{env.bucket}/runs/{run_id}/output/{run_id}-a1/output/model.tar.gz"
    ev["evaluation"] = dict(ev["evaluation"], challenger=value, model_artifacts=uri,
                            metrics=dict(ev["evaluation"]["metrics"], **{"mAP50-95": value}))
    env.s3.put_object(Bucket=env.bucket, Key=uri.split("/", 3)[3],
                      Body=model_archive(files or {**BUNDLE, "best.pt": run_id.encode()}))
    run = RunContext.model_validate(ev["run"])
    env.store.create_run(run)
    env.store.update_run(run_id, metrics=ev["evaluation"]["metrics"], job_names=[f"{run_id}-a1"])
    if registry:
        arn = env.registry.register(dataset=run.dataset.name, run_id=run_id, model_data_url=uri,
                                    image_uri=run.image_uri, status="PendingManualApproval",
                                    properties={"mAP50-95": value})
        ev["evaluation"]["model_package_arn"] = arn
        env.store.update_run(run_id, model_package_arn=arn)
    return ev


def _promote(env, ev, s3=None, registry=True):
    return promote(PromoteEvent.model_validate(ev), bucket=env.bucket, store=env.store, s3=s3 or env.s3,
                   registry=env.registry if registry else None, sleep=lambda _s: None)


def _champion_bytes(env, name="best.pt"):
    return env.s3.get_object(Bucket=env.bucket, Key=f"models/pallets/champion/{name}")["Body"].read()


def _approval(env, ev):
    return env.registry.describe(ev["evaluation"]["model_package_arn"])["ModelApprovalStatus"]


def test_promote_copies_the_whole_bundle_and_approves(env, event):
    ev = _run(env, event, "run-a", 0.6)
    out = _promote(env, ev)
    assert out["promoted"] is True
    bundle = {"best.pt", "model.onnx", "best.torchscript", "model.json", "DEPLOY.md", "metrics.json",
              "best_openvino_model/best.xml", "best_openvino_model/best.bin"}
    assert set(out["bundle"]) == bundle  # training state (last.pt) is not part of it
    assert set(list_files(env.s3, env.bucket, "models/pallets/versions/run-a/")) == bundle
    assert set(list_files(env.s3, env.bucket, "models/pallets/champion/")) == bundle
    assert _champion_bytes(env) == b"run-a"
    assert champion_files_match(env.s3, env.bucket, "pallets", "run-a") == (True, "")
    assert _approval(env, ev) == "Approved"
    # Idempotent per run: a re-invoked Promote changes nothing and succeeds.
    assert _promote(env, ev)["promoted"] is True
    assert [h["action"] for h in env.store.champion_history("pallets")] == ["promote"]


def test_legacy_weights_folder_and_missing_metrics_json(env, event):
    ev = _run(env, event, "run-a", 0.6, files={"weights/best.pt": b"legacy"}, registry=False)
    out = _promote(env, ev, registry=False)
    assert out["bundle"] == ["best.pt", "metrics.json"] and _champion_bytes(env) == b"legacy"
    assert json.loads(_champion_bytes(env, "metrics.json"))["mAP50-95"] == 0.6


def test_worse_model_later_loses_and_its_package_is_rejected(env, event):
    better, worse = _run(env, event, "run-better", 0.7), _run(env, event, "run-worse", 0.6)
    assert _promote(env, better)["promoted"] is True
    out = _promote(env, worse)
    assert out["promoted"] is False and "run-better" in out["reason"]
    assert _champion_bytes(env) == b"run-better"
    assert _approval(env, better) == "Approved" and _approval(env, worse) == "Rejected"
    # The loser's bundle is still kept as a version.
    assert list_files(env.s3, env.bucket, "models/pallets/versions/run-worse/")


def test_new_champion_rejects_the_previous_one_and_records_previous_run_id(env, event):
    a, b = _run(env, event, "run-a", 0.5), _run(env, event, "run-b", 0.7)
    _promote(env, a)
    out = _promote(env, b)
    assert out["promoted"] is True and out["previous_run_id"] == "run-a"
    assert env.store.get_champion("pallets")["previous_run_id"] == "run-a"
    assert _approval(env, a) == "Rejected" and _approval(env, b) == "Approved"
    approved = env.registry.packages("pallets", "Approved")
    assert [p["ModelPackageArn"] for p in approved] == [b["evaluation"]["model_package_arn"]]


def test_conditional_write_demands_min_improvement_on_the_same_metric(env):
    store = env.store
    assert store.put_champion_if_better("ds", "r1", "mAP50-95", 0.60, {"mAP50-95": 0.60, "mAP50": 0.8}, "k1")
    assert not store.put_champion_if_better("ds", "r2", "mAP50-95", 0.605, {}, "k2", min_improvement=0.01)
    assert store.put_champion_if_better("ds", "r3", "mAP50-95", 0.61, {}, "k3", min_improvement=0.01)
    assert store.get_champion("ds")["previous_run_id"] == "r1"
    # Another metric: compared with the champion's recorded metrics of that name (r3 has none: kept).
    assert not store.put_champion_if_better("ds", "r4", "mAP50", 0.99, {"mAP50": 0.99}, "k4")
    assert store.put_champion_if_better("ds", "r5", "mAP50-95", 0.9, {"mAP50-95": 0.9, "mAP50": 0.95}, "k5")
    assert not store.put_champion_if_better("ds", "r6", "mAP50", 0.9, {"mAP50": 0.9}, "k6")
    assert store.put_champion_if_better("ds", "r7", "mAP50", 0.96, {"mAP50": 0.96}, "k7")
    champion = store.get_champion("ds")
    assert champion["run_id"] == "r7" and champion["previous_run_id"] == "r5" and champion["metric"] == "mAP50"


def test_paired_verdicts_need_the_compared_champion_to_still_be_champion(env):
    """The write requires the champion the job compared with; the recorded numbers (other val splits) are
    not compared again for a paired verdict: a model that scores 0.3 where the champion scored less wins."""
    store = env.store
    assert store.put_champion_if_better("ds", "r1", "mAP50-95", 0.9, {"mAP50-95": 0.9}, "k1", compared_with=None)
    # A first-model verdict loses once any champion exists (it was never compared with it).
    assert not store.put_champion_if_better("ds", "r0", "mAP50-95", 0.95, {}, "k0", compared_with=None)
    assert store.put_champion_if_better("ds", "r2", "mAP50-95", 0.3, {}, "k2", compared_with="r1", paired=True)
    assert store.get_champion("ds")["run_id"] == "r2" and store.get_champion("ds")["previous_run_id"] == "r1"
    # r3 was compared with r1 too, but r2 became champion during its training: kept, whatever its number.
    assert not store.put_champion_if_better("ds", "r3", "mAP50-95", 0.99, {}, "k3", compared_with="r1", paired=True)
    # Not like-for-like (recorded basis): identity AND the recorded numbers.
    assert not store.put_champion_if_better("ds", "r4", "mAP50-95", 0.2, {}, "k4", compared_with="r2")
    assert store.put_champion_if_better("ds", "r5", "mAP50-95", 0.31, {}, "k5", compared_with="r2")
    assert [h["run_id"] for h in store.champion_history("ds")][:3] == ["r5", "r2", "r1"]


def test_promote_keeps_a_run_whose_champion_changed_and_says_why(env, event):
    first, late = _run(env, event, "run-a", 0.5), _run(env, event, "run-late", 0.9)
    first["evaluation"].update(basis="first", compared_with=None)
    late["evaluation"].update(basis="first", compared_with=None)  # it too started with no champion
    env.s3.put_object(Bucket=env.bucket, Key="models/pallets/versions/run-late/verdict.json",
                      Body=json.dumps({"better": True}).encode())
    assert _promote(env, first)["promoted"] is True
    out = _promote(env, late)
    assert out["promoted"] is False and "champion changed during training: run-a became champion" in out["reason"]
    verdict = json.loads(env.s3.get_object(Bucket=env.bucket, Key="models/pallets/versions/run-late/verdict.json")
                         ["Body"].read())
    assert verdict["promotion"]["promoted"] is False and "run-a" in verdict["promotion"]["reason"]


def test_a_copy_failure_during_promotion_is_retried(env, event):
    ev = _run(env, event, "run-a", 0.6)
    flaky = FlakyS3(env.s3, failures=2)
    out = _promote(env, ev, s3=flaky)
    assert out["promoted"] is True and flaky.copies > 2
    assert champion_files_match(env.s3, env.bucket, "pallets", "run-a")[0] is True


def test_a_copy_failure_that_persists_is_raised_then_repaired(env, event):
    a, b = _run(env, event, "run-a", 0.5), _run(env, event, "run-b", 0.7, files={"best.pt": b"B"})
    _promote(env, a)
    with pytest.raises(PromotionCopyFailed, match="copying the bundle of run-b"):
        _promote(env, b, s3=FlakyS3(env.s3, failures=100))
    # The record moved (it is the truth); champion/ still holds run-a's bundle: they disagree...
    assert env.store.get_champion("pallets")["run_id"] == "run-b"
    ok, why = champion_files_match(env.s3, env.bucket, "pallets", "run-b")
    assert not ok and "champion/" in why
    # ... until the repair (the watchdog's call) puts champion/ right, stale bundle files included.
    fixed = repair_champion("pallets", env.store, env.s3, bucket=env.bucket, registry=env.registry)
    assert fixed["repaired"] is True and fixed["files"] == ["best.pt", "metrics.json"]
    assert set(list_files(env.s3, env.bucket, "models/pallets/champion/")) == {"best.pt", "metrics.json"}
    assert _champion_bytes(env) == b"B"
    assert _approval(env, b) == "Approved" and _approval(env, a) == "Rejected"
    again = repair_champion("pallets", env.store, env.s3, bucket=env.bucket, registry=env.registry)
    assert again["repaired"] is False  # nothing left to do
    # A re-run of Promote for the same run would have done the same (idempotent).
    assert _promote(env, b)["promoted"] is True


def test_repair_without_champion_is_a_no_op(env):
    assert repair_champion("nothing", env.store, env.s3, bucket=env.bucket, registry=None)["repaired"] is False


def test_rollback_and_manual_promote_move_files_record_and_approval(env, event):
    a, b = _run(env, event, "run-a", 0.5), _run(env, event, "run-b", 0.7)
    for ev in (a, b):
        _promote(env, ev)
    rollback("pallets", bucket=env.bucket, store=env.store, s3=env.s3, registry=env.registry)
    assert env.store.get_champion("pallets")["run_id"] == "run-a" and _champion_bytes(env) == b"run-a"
    assert _approval(env, a) == "Approved" and _approval(env, b) == "Rejected"
    manual_promote("run-b", bucket=env.bucket, store=env.store, s3=env.s3, registry=env.registry)
    assert env.store.get_champion("pallets")["run_id"] == "run-b" and _champion_bytes(env) == b"run-b"
    assert _approval(env, a) == "Rejected" and _approval(env, b) == "Approved"
    # A run that was never promoted (KEPT) is extracted from its training output first.
    c = _run(env, event, "run-c", 0.1)
    manual_promote("run-c", bucket=env.bucket, store=env.store, s3=env.s3, registry=env.registry)
    assert _champion_bytes(env) == b"run-c" and _approval(env, c) == "Approved"
    with pytest.raises(ValueError, match="unknown run"):
        manual_promote("nope", bucket=env.bucket, store=env.store, s3=env.s3)


def test_group_names_are_safe_and_distinct():
    assert group_name("yoloops-dev", "pallets") == "yoloops-dev--pallets"
    # Stack `yolo` with dataset dev-pallets vs stack `yolo-dev` with dataset pallets: never one group, and
    # neither stack's IAM pattern (<prefix>--*) matches the other's groups.
    assert group_name("yolo", "dev-pallets") != group_name("yolo-dev", "pallets")
    assert not fnmatch.fnmatchcase(group_name("yolo-dev", "pallets"), "yolo--*")
    assert not fnmatch.fnmatchcase(group_name("yolo", "dev-pallets"), "yolo-dev--*")
    a, b = group_name("yoloops", "a.b"), group_name("yoloops", "a_b")
    assert a != b and all(c.isalnum() or c == "-" for c in a + b)
    long = group_name("my-very-long-stack-name-for-production", "d" * 63)
    assert len(long) <= 63 and long[0].isalnum() and long[-1].isalnum()
