"""Physical names the template builds fit AWS's limits for any stack name users type and any NamePrefix
its AllowedPattern admits (the longest one), in the region with the longest name."""

from __future__ import annotations

import re

import pytest
from iam_view import render, translated

ACCOUNT = "123456789012"
LONGEST_REGION = "ap-southeast-5"  # 14 characters, the longest region names
STACK_NAMES = ["yoloops-dev", "Yoloops-Robotics-Team-Production-Stack-2026",
               "MyTeam" + "X" * 90 + "-prod"]  # CloudFormation allows 128 characters, mixed case
# (resource type, name property) -> (max length, allowed characters)
LIMITS = {
    ("AWS::S3::Bucket", "BucketName"): (63, r"[a-z0-9][a-z0-9.-]*[a-z0-9]"),
    ("AWS::ECR::Repository", "RepositoryName"): (256, r"[a-z0-9][a-z0-9._/-]*"),
    ("AWS::SecretsManager::Secret", "Name"): (512, r"[A-Za-z0-9/_+=.@-]+"),
    ("AWS::Logs::LogGroup", "LogGroupName"): (512, r"[A-Za-z0-9_/.#-]+"),
    ("AWS::Budgets::Budget", "Budget.BudgetName"): (100, r"[^:\\]+"),
    ("AWS::CloudWatch::Dashboard", "DashboardName"): (255, r"[A-Za-z0-9_-]+"),
    ("AWS::DynamoDB::Table", "TableName"): (255, r"[A-Za-z0-9_.-]+"),
    ("AWS::SQS::Queue", "QueueName"): (80, r"[A-Za-z0-9_-]+"),
    ("AWS::SNS::Topic", "TopicName"): (256, r"[A-Za-z0-9_-]+"),
    ("AWS::Lambda::Function", "FunctionName"): (64, r"[A-Za-z0-9_-]+"),
    ("AWS::StepFunctions::StateMachine", "StateMachineName"): (80, r"[A-Za-z0-9_-]+"),
    ("AWS::IAM::Role", "RoleName"): (64, r"[A-Za-z0-9+=,.@_-]+"),
    ("AWS::Events::Rule", "Name"): (64, r"[A-Za-z0-9._-]+"),
    ("AWS::CloudWatch::Alarm", "AlarmName"): (255, r".+"),
}


def longest_prefix(pattern: str) -> str:
    """The longest NamePrefix the parameter's AllowedPattern admits (the pattern is checked to match it)."""
    m = re.fullmatch(r"\^\(\?=\.\{1,(\d+)\}\$\)\[a-z0-9\]\+\(-\[a-z0-9\]\+\)\*\$", pattern)
    assert m, f"NamePrefix AllowedPattern changed ({pattern}); update longest_prefix()"
    value = ("a-" * int(m.group(1)))[:int(m.group(1)) - 1] + "z"
    assert re.fullmatch(pattern, value) and not re.fullmatch(pattern, value + "z")
    return value


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def physical_names(cfn: dict, values: dict[str, str]):
    for logical, res in cfn["Resources"].items():
        for (typ, prop), limit in LIMITS.items():
            if res["Type"] != typ:
                continue
            value = res.get("Properties", {})
            for part in prop.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                yield logical, prop, substitute(render(value), values), limit


@pytest.fixture(scope="module")
def cfn():
    return translated()


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_every_physical_name_fits_its_limit(cfn, stack):
    prefix = longest_prefix(cfn["Parameters"]["NamePrefix"]["AllowedPattern"])
    values = {"AWS::StackName": stack, "AWS::Region": LONGEST_REGION, "AWS::AccountId": ACCOUNT,
              "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "NamePrefix": prefix}
    checked = []
    for logical, prop, name, (limit, chars) in physical_names(cfn, values):
        assert "${" not in name, f"{logical}.{prop} = {name!r}: unresolved reference"
        assert len(name) <= limit, f"{logical}.{prop} = {name!r} is {len(name)} > {limit} characters"
        assert re.fullmatch(chars, name), f"{logical}.{prop} = {name!r} has characters AWS rejects"
        checked.append(logical)
    assert {"ArtifactsBucket", "TrainingImageRepository"} <= set(checked)


def test_the_bucket_name_does_not_depend_on_the_stack_name(cfn):
    name = render(cfn["Resources"]["ArtifactsBucket"]["Properties"]["BucketName"])
    assert "AWS::StackName" not in name and "${NamePrefix}" in name


def test_a_too_long_prefix_would_be_caught(cfn):
    # The same check with a 30-character prefix (what the pattern must reject) overflows the bucket name.
    values = {"AWS::Region": LONGEST_REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
              "NamePrefix": "a" * 30, "AWS::StackName": "x"}
    (bucket,) = [n for lid, _, n, _ in physical_names(cfn, values) if lid == "ArtifactsBucket"]
    assert len(bucket) > 63
    pattern = cfn["Parameters"]["NamePrefix"]["AllowedPattern"]
    assert not re.fullmatch(pattern, "a" * 30)
    assert not re.fullmatch(pattern, "Yoloops-Dev")


@pytest.mark.parametrize("prefix", ["yolo--dev", "yolo-", "-yolo", "yolo_dev"])
def test_a_prefix_with_the_registry_delimiter_or_a_loose_hyphen_is_refused(cfn, prefix):
    """Registry groups are <prefix>--<dataset>: a prefix holding "--" could claim another stack's groups."""
    assert not re.fullmatch(cfn["Parameters"]["NamePrefix"]["AllowedPattern"], prefix)
    assert re.fullmatch(cfn["Parameters"]["NamePrefix"]["AllowedPattern"], "yoloops-dev-2")
