"""scripts/checkov_gate.py: every checkov failure needs an entry in checkov-skips.yaml with a reason."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gate():
    spec = importlib.util.spec_from_file_location("checkov_gate", ROOT / "scripts" / "checkov_gate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(*failed: tuple[str, str], passed: int = 10, parsing_errors: int = 0) -> list[dict]:
    return [{"check_type": "cloudformation",
             "summary": {"passed": passed, "failed": len(failed), "parsing_errors": parsing_errors},
             "results": {"failed_checks": [{"check_id": c, "resource": r} for c, r in failed]}}]


SKIPS = [{"check": "CKV_AWS_117", "resources": ["AWS::Lambda::Function.*"], "kind": "accepted",
          "reason": "no VPC because the functions only call AWS APIs over TLS"},
         {"check": "CKV_AWS_18", "resources": ["AWS::S3::Bucket.AccessLogsBucket"], "kind": "accepted",
          "reason": "this is the log bucket itself and cannot log to itself"}]


def test_the_checked_in_skip_file_is_well_formed(gate):
    skips = gate.load_skips(ROOT / "checkov-skips.yaml")
    assert skips and all(s["kind"] in gate.KINDS for s in skips)
    named = {s["check"] for s in skips}
    # The findings the issue names as false positives are recorded as such.
    assert {"CKV_AWS_27", "CKV_AWS_116"} <= named
    assert next(s for s in skips if s["check"] == "CKV_AWS_27")["kind"] == "false-positive"
    # Real findings are fixed, not skipped: the artifacts bucket logs its accesses.
    assert not [s for s in skips if s["check"] == "CKV_AWS_18" and "AWS::S3::Bucket.ArtifactsBucket" in s["resources"]]


def test_explained_findings_pass_and_an_unexplained_one_fails(gate):
    failed = gate.failed_checks(report(("CKV_AWS_117", "AWS::Lambda::Function.NotifyFunction"),
                                       ("CKV_AWS_18", "AWS::S3::Bucket.AccessLogsBucket")))
    assert gate.gate(failed, SKIPS) == ([], [])
    failed.append(("CKV_AWS_18", "AWS::S3::Bucket.ArtifactsBucket"))
    unexplained, _ = gate.gate(failed, SKIPS)
    assert unexplained == ["CKV_AWS_18 AWS::S3::Bucket.ArtifactsBucket"]


def test_a_skip_nothing_needs_is_reported_stale(gate):
    failed = gate.failed_checks(report(("CKV_AWS_117", "AWS::Lambda::Function.NotifyFunction")))
    assert gate.gate(failed, SKIPS)[1] == ["CKV_AWS_18 ['AWS::S3::Bucket.AccessLogsBucket']"]


@pytest.mark.parametrize("bad", [
    {"check": "CKV_AWS_1", "resources": ["x"], "kind": "accepted", "reason": "because"},
    {"check": "CKV_AWS_1", "resources": [], "kind": "accepted", "reason": "a long enough reason with eight words"},
    {"check": "CKV_AWS_1", "resources": ["x"], "kind": "whatever", "reason": "a long enough reason with eight words"},
])
def test_a_skip_without_a_reason_or_kind_is_refused(gate, tmp_path, bad):
    import yaml

    path = tmp_path / "skips.yaml"
    path.write_text(yaml.safe_dump({"skips": [bad]}))
    with pytest.raises(ValueError):
        gate.load_skips(path)


@pytest.mark.parametrize("broken", [report(passed=0), report(parsing_errors=1), [], {"check_type": "terraform"}])
def test_a_run_that_checked_nothing_is_an_error(gate, broken):
    with pytest.raises(ValueError):
        gate.failed_checks(broken)


def test_main_exit_codes(gate, tmp_path):
    import json

    skips = tmp_path / "skips.yaml"
    skips.write_text((ROOT / "checkov-skips.yaml").read_text())
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(report(("CKV_AWS_117", "AWS::Lambda::Function.NotifyFunction"))))
    assert gate.main([str(ok), str(skips)]) == 0  # stale entries only warn
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(report(("CKV_AWS_20", "AWS::S3::Bucket.ArtifactsBucket"))))
    assert gate.main([str(bad), str(skips)]) == 1
