"""CI deploys with least privilege (bootstrap.yaml), read against CloudFormation's resource provider schemas.

CloudFormation creates each stack as that stack's execution role: it must allow every permission the
handlers of every resource type in the translated template call (else a deploy fails mid-way, as the first
AWS::IAM::Role did without iam:ListRolePolicies), and nothing else. The dev role touches nothing of prod,
and no role the stacks create is without its stack's permissions boundary.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import cfnlint
import pytest
from iam_view import as_list, handler_permissions, render, translated

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT, REGION = "123456789012", "us-east-1"
# IAM's own action names (cfn-lint's copy of the Service Authorization Reference). Handlers also list API
# operations IAM authorizes under another action (s3:DeleteBucketCors is s3:PutBucketCORS): not grantable.
IAM_ACTIONS = json.loads((Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json").read_text())
# Handler permissions the execution roles deny on purpose, and why.
DENIED_ON_PURPOSE = {
    "iam:DeleteRolePermissionsBoundary": "a role of the stack keeps its boundary (removing it unbounds the role)",
}
# Actions of the managed policies SAM attaches to the stack's roles (their documents are not in the template).
SAM_MANAGED_ACTIONS = {
    "AWSLambdaBasicExecutionRole": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
    "AWSXrayWriteOnlyAccess": ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
                               "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"],
    "AWSLambdaSQSQueueExecutionRole": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
}
STAGES = {"Dev": "Prod", "Prod": "Dev"}


def _bootstrap() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse((ROOT / "bootstrap.yaml").read_text())


@pytest.fixture(scope="module")
def boot() -> dict[str, Any]:
    return _bootstrap()


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translated()


def _values(boot: dict[str, Any]) -> dict[str, str]:
    values = {k: str(v.get("Default", f"<{k}>")) for k, v in boot["Parameters"].items()}
    return {**values, "AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}


def resolve(value: Any, boot: dict[str, Any]) -> str:
    """An intrinsic as the string CloudFormation makes of it with the parameters' defaults."""
    values = _values(boot)
    if isinstance(value, dict) and list(value) == ["Ref"] and value["Ref"] in boot["Resources"]:
        return f"arn:aws:iam::{ACCOUNT}:policy/<{value['Ref']}>"
    return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), m.group(0)), render(value))


def statements(boot: dict[str, Any], logical: str) -> list[dict[str, Any]]:
    """Every statement a role or managed policy of bootstrap.yaml holds (a role's managed policies included),
    with Action/NotAction/Resource/NotResource as lists of resolved strings."""
    props = boot["Resources"][logical]["Properties"]
    docs = [props["PolicyDocument"]] if "PolicyDocument" in props else \
        [p["PolicyDocument"] for p in props.get("Policies") or []]
    for ref in props.get("ManagedPolicyArns") or []:
        assert isinstance(ref, dict) and "Ref" in ref, f"{logical}: an AWS managed policy ({render(ref)})"
        docs.append(boot["Resources"][ref["Ref"]]["Properties"]["PolicyDocument"])
    out = []
    for doc in docs:
        for st in as_list(doc["Statement"]):
            item = dict(st)
            for key in ("Action", "NotAction", "Resource", "NotResource"):
                if key in st:
                    item[key] = [resolve(v, boot) for v in as_list(st[key])]
            out.append(item)
    return out


def _match(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def allows(sts: list[dict[str, Any]], action: str, resource: str | None = None) -> bool:
    return any(st["Effect"] == "Allow" and any(_match(a, action) for a in st.get("Action", []))
               and (resource is None or any(_match(r, resource) for r in st.get("Resource", [])))
               for st in sts)


def denies(sts: list[dict[str, Any]], action: str, resource: str) -> bool:
    return any(st["Effect"] == "Deny" and not st.get("Condition")
               and any(_match(a, action) for a in st.get("Action", []))
               and any(_match(r, resource) for r in st.get("Resource", [])) for st in sts)


def iam_action(permission: str) -> bool:
    service, _, name = permission.partition(":")
    return service not in IAM_ACTIONS or name.lower() in IAM_ACTIONS[service].get("Actions", {})


def template_handler_permissions(cfn: dict[str, Any]) -> dict[str, set[str]]:
    return {t: handler_permissions(t) for t in sorted({r["Type"] for r in cfn["Resources"].values()})}


@pytest.mark.parametrize("stage", STAGES)
def test_the_execution_role_allows_every_handler_permission_of_every_resource_type(boot, cfn, stage):
    sts = statements(boot, f"{stage}CloudFormationExecutionRole")
    missing = [f"{t}: {p}" for t, perms in template_handler_permissions(cfn).items() for p in sorted(perms)
               if iam_action(p) and p not in DENIED_ON_PURPOSE and not allows(sts, p)]
    assert not missing, "add to bootstrap.yaml (StackResourceHandlers*):\n" + "\n".join(missing)
    assert allows(sts, "iam:ListRolePolicies") and allows(sts, "iam:ListAttachedRolePolicies")


@pytest.mark.parametrize("stage", STAGES)
def test_the_execution_role_allows_nothing_no_handler_needs(boot, cfn, stage):
    needed = set().union(*template_handler_permissions(cfn).values())
    extra = {a for st in statements(boot, f"{stage}CloudFormationExecutionRole") if st["Effect"] == "Allow"
             for a in st.get("Action", [])} - needed
    assert not extra, f"allowed but no handler of the template's resource types needs it: {sorted(extra)}"
    assert not any("NotAction" in st for st in statements(boot, f"{stage}CloudFormationExecutionRole"))


@pytest.mark.parametrize("stage", STAGES)
def test_roles_are_created_and_changed_only_with_the_stages_boundary(boot, stage):
    stack = _values(boot)[f"{stage}StackName"]
    sts = statements(boot, f"{stage}CloudFormationExecutionRole")
    own_role = f"arn:aws:iam::{ACCOUNT}:role/{stack}-WatchdogFunctionRole-AbC123"
    boundary = {"Ref": f"{stage}StackBoundary"}
    writes = {"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
              "iam:DeleteRolePolicy", "iam:PutRolePermissionsBoundary"}
    for action in writes:
        granting = [st for st in sts if st["Effect"] == "Allow" and any(_match(a, action) for a in st["Action"])]
        assert granting and all(st["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": boundary}}
                                for st in granting), action
        assert all(r.endswith(f":role/{stack}-*") for st in granting for r in st["Resource"]), action
    assert allows(sts, "iam:PassRole", own_role)
    assert not allows(sts, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole")
    assert denies(sts, "iam:DeleteRolePermissionsBoundary", own_role)
    (guard,) = [st for st in sts if st["Effect"] == "Deny" and "iam:CreateRole" in st["Action"]]
    assert guard["Condition"] == {"StringNotEquals": {"iam:PermissionsBoundary": boundary}}


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_touches_nothing_of_the_other(boot, stage):
    """Sample ARNs of each stack's resources, as CloudFormation and the template name them."""
    values = _values(boot)

    def arns(s: str) -> list[str]:
        stack, prefix = values[f"{s}StackName"], values[f"{s}NamePrefix"]
        return [f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/0f1e2d3c-aaaa-bbbb-cccc-123456789012",
                f"arn:aws:s3:::{prefix}-artifacts-{ACCOUNT}-{REGION}", f"arn:aws:s3:::{stack}-accesslogsbucket-x1y2",
                f"arn:aws:s3:::{prefix}-artifacts-{ACCOUNT}-{REGION}/models/pallets/champion/best.pt",
                f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{stack}-RunsTable-1A2B3C",
                f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{stack}-WatchdogFunction-1A2B3C",
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{stack}/slack-webhook-url-AbCdEf",
                f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{prefix}-training",
                f"arn:aws:sqs:{REGION}:{ACCOUNT}:{stack}-TriggersDlq-1A2B3C",
                f"arn:aws:sns:{REGION}:{ACCOUNT}:{stack}-NotificationsTopic-1A2B3C",
                f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{stack}-WatchdogFunctionSweep-1A2B3C",
                f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/vendedlogs/states/{stack}-training",
                f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{prefix}--pallets",
                f"arn:aws:iam::{ACCOUNT}:role/{stack}-SageMakerExecutionRole-1A2B3C",
                f"arn:aws:iam::{ACCOUNT}:policy/{stack}-boundary",
                f"arn:aws:budgets::{ACCOUNT}:budget/{prefix}-sagemaker",
                f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{prefix}-operations"]

    other = STAGES[stage]
    for logical in (f"{stage}CloudFormationExecutionRole", f"{stage}StackBoundary"):
        sts = statements(boot, logical)
        assert not [a for a in arns(other) if not denies(sts, "s3:PutBucketPolicy", a)], logical
        assert not [a for a in arns(stage) if denies(sts, "s3:PutBucketPolicy", a)], logical
    tagged = [st for st in statements(boot, f"{stage}CloudFormationExecutionRole") if st["Effect"] == "Deny"
              and "aws:ResourceTag/yoloops:stack" in json.dumps(st.get("Condition"))]
    assert [render(v) for v in tagged[0]["Condition"]["StringEquals"].values()] == [f"${{{other}StackName}}"]
    # The deploy role drives its own stack only and passes its own execution role only.
    deploy = json.dumps(boot["Resources"][f"{stage}DeployRole"]["Properties"]["Policies"])
    assert f"{stage}CloudFormationExecutionRole" in deploy and other not in deploy and "*" not in \
        re.sub(r"stack/\$\{\w+\}/\*|\$\{SamArtifactsBucket\.Arn\}/\*", "", deploy)


def test_every_role_the_template_creates_gets_the_boundary_bootstrap_makes(boot, cfn, samconfig):
    expected = {"Fn::If": ["HasPermissionsBoundary",
                           {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/${PermissionsBoundaryName}"},
                           {"Ref": "AWS::NoValue"}]}
    roles = {k: r["Properties"].get("PermissionsBoundary") for k, r in cfn["Resources"].items()
             if r["Type"] == "AWS::IAM::Role"}
    assert len(roles) > 10 and {k for k, b in roles.items() if b != expected} == set()
    for env, stage in (("default", "Dev"), ("prod", "Prod")):
        stack = samconfig[env]["global"]["parameters"]["stack_name"]
        overrides = dict(p.split("=", 1) for p in samconfig[env]["deploy"]["parameters"]["parameter_overrides"])
        assert stack == _values(boot)[f"{stage}StackName"]
        assert overrides["NamePrefix"] == _values(boot)[f"{stage}NamePrefix"]
        name = boot["Resources"][f"{stage}StackBoundary"]["Properties"]["ManagedPolicyName"]
        assert overrides["PermissionsBoundaryName"] == resolve(name, boot), env


def test_the_boundary_leaves_the_stacks_roles_everything_they_use(boot, cfn):
    from iam_view import allow_statements, managed_policies

    sts = statements(boot, "DevStackBoundary")
    used = {(role, a) for role, actions, _, _ in allow_statements(cfn) for a in actions}
    used |= {(role, a) for role, names in managed_policies(cfn).items() for n in names
             for a in SAM_MANAGED_ACTIONS[n]}
    cut = sorted(f"{role}: {a}" for role, a in used if not allows(sts, a))
    assert not cut, "the permissions boundary (bootstrap.yaml StackBoundary) would deny:\n" + "\n".join(cut)
    own = f"arn:aws:iam::{ACCOUNT}:role/{_values(boot)['DevStackName']}-SageMakerExecutionRole-1A2B3C"
    assert not any(st["Effect"] == "Deny" and "iam:PassRole" in st["Action"]
                   and not any(_match(r, own) for r in st["NotResource"]) for st in sts if "NotResource" in st)
