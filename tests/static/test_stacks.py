"""Stacks that share an account (dev and prod in one account and region, as samconfig.toml deploys them):
tags, job names, IAM scopes, event rules, registry groups and the AWS Budget each stay within one stack."""

from __future__ import annotations

import fnmatch
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from iam_view import STACK_CODE_EXPR, allow_statements, provider_schema, render, translated
from yoloops_core.models import job_name, run_id_from_job_name
from yoloops_core.registry import group_name

ROOT = Path(__file__).resolve().parents[2]
STACK_TAG = "yoloops:stack"
# SAM gives the EventBridge rules and SQS event source mappings it generates none of the function's Tags;
# CloudFormation puts the stack-level tags (samconfig.toml `tags`) on them, checked below.
GENERATED_WITHOUT_TAGS = {"AWS::Events::Rule", "AWS::Lambda::EventSourceMapping"}


@pytest.fixture(scope="module")
def cfn():
    return translated()


def _tag_values(tags: Any) -> dict[str, str]:
    if isinstance(tags, dict):
        return {k: render(v) for k, v in tags.items()}
    return {t["Key"]: render(t["Value"]) for t in tags or [] if isinstance(t, dict) and "Key" in t}


def test_every_taggable_resource_carries_the_stack_tag(cfn):
    untagged = []
    for logical, res in cfn["Resources"].items():
        props = provider_schema(res["Type"]).get("properties", {})
        key = next((k for k in ("Tags", "ResourceTags") if k in props), None)
        if key is None or res["Type"] in GENERATED_WITHOUT_TAGS:
            continue
        if _tag_values(res.get("Properties", {}).get(key)).get(STACK_TAG) != "${AWS::StackName}":
            untagged.append(f"{logical} ({res['Type']})")
    assert not untagged, "resources without yoloops:stack=<stack name>:\n" + "\n".join(untagged)


def test_stack_level_tags_name_the_stack_for_what_sam_does_not_tag(samconfig):
    for env in ("default", "prod"):
        stack = samconfig[env]["global"]["parameters"]["stack_name"]
        tags = dict(t.split("=", 1) for t in samconfig[env]["deploy"]["parameters"]["tags"].split())
        assert tags.get(STACK_TAG) == stack, env


def test_training_jobs_are_tagged_and_named_per_stack(cfn):
    fn = next(r for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    env = fn["Properties"]["Environment"]["Variables"]
    assert env["STACK_CODE"] == STACK_CODE_EXPR and render(env["STACK_NAME"]) == "${AWS::StackName}"
    # What CloudFormation resolves STACK_CODE to, for two stacks in one account and region.
    codes = {}
    for stack in ("yoloops-dev", "yoloops-prod"):
        stack_id = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{stack}/{uuid.uuid4()}"
        codes[stack] = stack_id.split("/")[2].split("-")[0]
    run_id = "ds-pallets-v3-1a2b3c4d-5e6f7a8b"
    dev, prod = (job_name(run_id, 1, codes[s]) for s in ("yoloops-dev", "yoloops-prod"))
    assert dev != prod and len(dev) <= 63
    # Every role that touches training jobs is scoped to its stack's names: dev's roles match dev's jobs only.
    scoped = [(role, r) for role, actions, resources, _ in allow_statements(cfn)
              for r in resources if ":training-job/" in r]
    others = [prod, f"sw-pallets-{codes['yoloops-prod']}-001-1a2b3c4d",  # prod's run job, a job of prod's sweep
              "studio-xgboost-2026-11-28-a1", "ds-pallets-v3-1a2b3c4d-5e6f7a8b-a1"]  # Studio's, a pre-code name
    own: dict[str, bool] = {}
    for role, resource in scoped:
        assert "-${StackCode}-" in resource, (role, resource)
        pattern = resource.split(":training-job/")[1].replace("${StackCode}", codes["yoloops-dev"])
        assert not [o for o in others if fnmatch.fnmatchcase(o, pattern)], (role, resource)
        own[role] = own.get(role, False) or fnmatch.fnmatchcase(dev, pattern)
    assert {role for role, matched in own.items() if matched} >= {
        "TrainingStateMachineRole", "WatchdogFunctionRole", "ReconcileFunctionRole", "EvaluateFunctionRole",
        "TrainingEventsFunctionRole"}
    assert run_id_from_job_name(prod, codes["yoloops-dev"]) is None


def test_the_watchdog_needs_no_call_on_a_job_to_know_it_is_not_its_own(cfn):
    (stmt,) = [s for s in allow_statements(cfn)
               if s[0] == "WatchdogFunctionRole" and "sagemaker:StopTrainingJob" in s[1]]
    assert "sagemaker:ListTags" not in stmt[1]  # the name decides; ListTags on a foreign job would be denied


def test_training_events_rule_selects_this_stacks_jobs(cfn):
    pattern = cfn["Resources"]["TrainingEventsFunctionTrainingJobStateChange"]["Properties"]["EventPattern"]
    assert [render(v) for v in pattern["detail"]["Tags"][STACK_TAG]] == ["${AWS::StackName}"]


def test_registry_groups_and_their_iam_scope_never_reach_another_prefix(cfn):
    pattern = cfn["Parameters"]["NamePrefix"]["AllowedPattern"]
    groups = {r for _, actions, resources, _ in allow_statements(cfn) for r in resources
              if ":model-package-group/" in r}
    assert groups and all(r.endswith(":model-package-group/${NamePrefix}--*") for r in groups)
    for short, long in (("yolo", "yolo-dev"), ("yoloops", "yoloops-dev-2")):
        assert re.fullmatch(pattern, short) and re.fullmatch(pattern, long)
        assert not fnmatch.fnmatchcase(group_name(long, "pallets"), f"{short}--*")
        assert not fnmatch.fnmatchcase(group_name(short, "dev-pallets"), f"{long}--*")
        assert fnmatch.fnmatchcase(group_name(short, "dev-pallets"), f"{short}--*")


def test_the_aws_budget_counts_this_stacks_spend_only(cfn):
    budget = cfn["Resources"]["SageMakerBudget"]["Properties"]["Budget"]
    assert budget["CostFilters"]["Service"] == ["Amazon SageMaker"]
    tag_filter = [render(v) for v in budget["CostFilters"]["TagKeyValue"]]
    assert tag_filter == ["user:yoloops:stack$${AWS::StackName}"]


def test_a_failing_sweep_raises_an_alarm(cfn):
    alarms = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert any(a.get("MetricName") == "Errors" and a.get("Namespace") == "AWS/Lambda"
               and [render(d["Value"]) for d in a["Dimensions"]] == ["${WatchdogFunction}"]
               and a.get("AlarmActions") for a in alarms)


def test_samconfig_stacks_have_distinct_prefixes(samconfig):
    prefixes = [dict(p.split("=", 1) for p in samconfig[env]["deploy"]["parameters"]["parameter_overrides"])
                ["NamePrefix"] for env in ("default", "prod")]
    assert len(set(prefixes)) == 2
