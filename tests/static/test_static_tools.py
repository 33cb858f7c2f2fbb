"""The offline SAM transform + cfn-lint and asl-validator: the real files pass, and broken ones fail.

`make static` runs the same checks on the real files; these tests prove the checks would notice the
mistakes `sam validate --lint` lets through (a bad runtime, a !Ref to nothing, an invalid state).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"

pytestmark = pytest.mark.static


@pytest.fixture(scope="module")
def packaged(sam_offline, template):
    return sam_offline.package_local_paths(template, base_dir=ROOT)


def lint(sam_offline, packaged_template, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "template.json"
    out.write_text(json.dumps(sam_offline.translate(packaged_template), indent=1))
    return sam_offline.cfn_lint(out)


def test_real_template_translates_and_lints_clean(sam_offline, tmp_path):
    code, report = sam_offline.translate_and_lint(ROOT / "template.yaml", tmp_path)
    assert code == 0, report
    translated = json.loads((tmp_path / "template.json").read_text())
    types = {r["Type"] for r in translated["Resources"].values()}
    assert {"AWS::Lambda::Function", "AWS::StepFunctions::StateMachine", "AWS::Lambda::Url"} <= types
    machine = next(r for r in translated["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine")
    # The definition is inlined by the offline package step, so cfn-lint also checked the ASL.
    assert "DefinitionString" in machine["Properties"]
    # The DLQ policy names the rules SAM generates; each must exist under that id after the transform.
    statement = translated["Resources"]["TriggersDlqPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    for source in statement["Condition"]["ArnEquals"]["aws:SourceArn"]:
        rule_id = source["Fn::GetAtt"][0]
        assert translated["Resources"][rule_id]["Type"] == "AWS::Events::Rule"
        dead_letter = translated["Resources"][rule_id]["Properties"]["Targets"][0]["DeadLetterConfig"]["Arn"]
        assert dead_letter == {"Fn::GetAtt": ["TriggersDlq", "Arn"]}


def test_bad_runtime_and_dangling_ref_are_caught(sam_offline, packaged, tmp_path):
    broken = copy.deepcopy(packaged)
    broken["Globals"]["Function"]["Runtime"] = "python3.99"
    notify = broken["Resources"]["NotifyFunction"]["Properties"]
    notify["Environment"] = {"Variables": {"RUNS_TABLE": {"Ref": "RunTable"}}}  # typo of RunsTable
    result = lint(sam_offline, broken, tmp_path)
    assert result.returncode != 0
    assert "E3030" in result.stdout and "python3.99" in result.stdout  # runtime not allowed
    assert "E1020" in result.stdout and "RunTable" in result.stdout  # Ref to nothing


def test_missing_code_dir_is_reported(sam_offline, template, tmp_path):
    broken = copy.deepcopy(template)
    broken["Resources"]["NotifyFunction"]["Properties"]["CodeUri"] = "functions/no_such_dir/"
    with pytest.raises(sam_offline.PackageError, match=r"NotifyFunction\.CodeUri: functions/no_such_dir/"):
        sam_offline.package_local_paths(broken, base_dir=ROOT)


def test_invalid_sam_is_rejected_by_the_transform(sam_offline, packaged):
    from samtranslator.model.exceptions import InvalidDocumentException

    broken = copy.deepcopy(packaged)
    # SAM accepts only AWS_IAM or NONE for a function URL.
    broken["Resources"]["GithubWebhookFunction"]["Properties"]["FunctionUrlConfig"]["AuthType"] = "BOGUS"
    with pytest.raises(InvalidDocumentException):
        sam_offline.translate(broken)


@pytest.mark.skipif(shutil.which("node") is None or not ASL_VALIDATOR.exists(), reason="run `make static` (npm ci)")
def test_asl_validator_accepts_the_workflow_and_rejects_a_broken_one(tmp_path):
    real = ROOT / "statemachine" / "training.asl.json"
    ok = subprocess.run([str(ASL_VALIDATOR), "--json-path", str(real)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    asl = json.loads(real.read_text())
    asl["States"][asl["StartAt"]]["Next"] = "NoSuchState"
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(asl))
    bad = subprocess.run([str(ASL_VALIDATOR), "--json-path", str(broken)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "NoSuchState" in bad.stdout + bad.stderr
