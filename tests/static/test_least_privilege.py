"""Least privilege on the translated template: no wildcard in an IAM Allow that is not explained here.

A wildcard is fine only where AWS requires it (actions without resource-level permissions) or where it IS
the scope (an S3 prefix, this stack's job names <run id>-<code>-a<n>). Anything else fails the test, so a new `*`
needs a reason in ALLOWED. Run `python tests/static/iam_view.py` to see every role's statements.
"""

from __future__ import annotations

import fnmatch
import re

import pytest
from iam_view import allow_statements, managed_policies, translated

BUCKET = r"arn:\$\{AWS::Partition\}:s3:::\$\{NamePrefix\}-artifacts-\$\{AWS::AccountId\}-\$\{AWS::Region\}"
PREFIX_SCOPES = {
    # The trailing * of an object prefix is the scope itself: the prefixes docs/architecture.md names.
    "artifacts prefix": re.compile(BUCKET + r"/(datasets|runs|checkpoints|models)/\*$"),
    # Job names are <run id>-<stack code>-a<n>: the *s are the run id and the attempt.
    "stack job names": re.compile(r"arn:\$\{AWS::Partition\}:sagemaker:\$\{AWS::Region\}:\$\{AWS::AccountId\}"
                                  r":training-job/\*-\$\{StackCode\}-a\*$"),
    # A sweep's tuning job is sw-<dataset>-<hash>-<stack code>, its training jobs <tuning job>-<NNN>-<hash>.
    "stack sweep names": re.compile(r"arn:\$\{AWS::Partition\}:sagemaker:\$\{AWS::Region\}:\$\{AWS::AccountId\}"
                                    r":(hyper-parameter-tuning-job/sw-\*-\$\{StackCode\}"
                                    r"|training-job/sw-\*-\$\{StackCode\}-\*)$"),
}
# (role glob, action glob, resource) -> why the wildcard stays.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("*StateMachineRole", "logs:*", "*"):
        "CloudWatch Logs vended-delivery actions (state machine Logging) have no resource-level permissions",
    ("SageMakerExecutionRole", "ecr:GetAuthorizationToken", "*"):
        "ecr:GetAuthorizationToken has no resource-level permissions",
    ("SageMakerExecutionRole", "cloudwatch:PutMetricData", "*"):
        "PutMetricData has no resource-level permissions (the statement is limited by namespace)",
    ("SageMakerExecutionRole", "logs:*",
     "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/sagemaker/TrainingJobs*"):
        "SageMaker writes one log stream per job under this log group; the * is the stream part",
    ("RefreshPricesFunctionRole", "pricing:GetProducts", "*"):
        "the Price List API has no resource-level permissions",
    ("WatchdogFunctionRole", "sagemaker:ListTrainingJobs", "*"):
        "ListTrainingJobs has no resource-level permissions",
    ("*", "sagemaker:*ModelPackage*", "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}"
     ":model-package-group/${NamePrefix}--*"):
        "model package groups are named <NamePrefix>--<dataset>: the * is the dataset",
    ("*", "sagemaker:*ModelPackage*", "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}"
     ":model-package/${NamePrefix}--*/*"):
        "model packages are <group>/<version>: the *s are the dataset and the version",
    ("*", "sagemaker:ListModelPackages", "*"):
        "ListModelPackages has no resource-level permissions",
    ("S3TriggerFunctionRole", "sqs:SendMessage*", "${UploadsQueue.QueueName}"):
        "SAM's SQSSendMessagePolicy (SendMessage and SendMessageBatch) on the one uploads queue",
    ("Image*FunctionRole", "states:SendTaskSuccess", "*"):
        "SendTask* have no resource-level permissions (a token only answers the task that issued it)",
    ("SlackInteractionsFunctionRole", "states:SendTask*", "*"):
        "SendTask* have no resource-level permissions (a token only answers the task that issued it)",
    ("WatchdogFunctionRole", "states:*", "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
     ":execution:${TrainingStateMachine.Name}:*"):
        "executions of the one training state machine (the * is the execution name = run id)",
    ("WatchdogFunctionRole", "states:*", "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
     ":execution:${SweepStateMachine.Name}:*"):
        "executions of the one sweep state machine (the * is the execution name = run id)",
}
# Managed policies SAM attaches, each with "*" resources that AWS requires.
ALLOWED_MANAGED = {
    "AWSLambdaBasicExecutionRole": "its own log group; CreateLogGroup has no narrower resource before it exists",
    "AWSXrayWriteOnlyAccess": "X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions",
    "AWSLambdaSQSQueueExecutionRole": "SAM's SQS event source mapping (ReceiveMessage/DeleteMessage on the queue)",
}


@pytest.fixture(scope="module")
def cfn():
    return translated()


def _allowed(role: str, action: str, resource: str) -> bool:
    for (role_glob, action_glob, allowed_resource) in ALLOWED:
        if fnmatch.fnmatchcase(role, role_glob) and fnmatch.fnmatchcase(action, action_glob) \
                and (resource == allowed_resource or resource.endswith(":" + allowed_resource)):
            return True
    return any(p.match(resource) for p in PREFIX_SCOPES.values())


def test_no_unexplained_wildcard(cfn):
    problems = []
    for role, actions, resources, _ in allow_statements(cfn):
        for action in actions:
            if "*" in action and not any(_allowed(role, action, r) for r in resources):
                problems.append(f"{role}: wildcard action {action} on {resources}")
            for resource in resources:
                if "*" in resource and not _allowed(role, action, resource):
                    problems.append(f"{role}: {action} on {resource}")
    assert not problems, "IAM wildcards without a reason in ALLOWED:\n" + "\n".join(sorted(set(problems)))


def test_only_known_managed_policies(cfn):
    unknown = {role: set(names) - set(ALLOWED_MANAGED) for role, names in managed_policies(cfn).items()}
    assert not {r: n for r, n in unknown.items() if n}


def test_no_crud_or_scan_or_batch_write(cfn):
    banned = {"dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:*", "s3:*"}
    found = [(role, a) for role, actions, _, _ in allow_statements(cfn) for a in actions if a in banned]
    assert not found


def test_delete_item_only_on_the_idempotency_table_and_parked_image_waits(cfn):
    """Run records, champions, sessions and the ledger are never deleted; parked image-wait tokens are
    ephemeral, and a role may delete those items only (LeadingKeys)."""
    deleters = set()
    for role, actions, resources, condition in allow_statements(cfn):
        if "dynamodb:DeleteItem" not in actions:
            continue
        deleters.add(role)
        if resources != ["${IdempotencyTable.Arn}"]:
            assert resources == ["${RunsTable.Arn}"], role
            assert condition == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["IMAGEWAIT#*"]}}, role
    assert {"ImageWaitFunctionRole", "ImagePushedFunctionRole"} <= deleters


def test_state_machine_passes_only_the_training_role_to_sagemaker_and_has_list_tags(cfn):
    statements = [s for s in allow_statements(cfn) if s[0] == "TrainingStateMachineRole"]
    (pass_role,) = [s for s in statements if "iam:PassRole" in s[1]]
    assert pass_role[2] == ["${SageMakerExecutionRole.Arn}"]
    assert pass_role[3] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    sync = next(s for s in statements if "sagemaker:CreateTrainingJob" in s[1])
    assert "sagemaker:ListTags" in sync[1]  # AWS documents it for createTrainingJob.sync
    assert all(PREFIX_SCOPES["stack job names"].match(r) for r in sync[2])


@pytest.mark.parametrize("role, prefixes", [
    # models/: base weights it checks; runs/: the version's data index and snapshot it writes for the job.
    ("ValidateDatasetFunctionRole", {"datasets", "models", "runs"}),
    ("EvaluateFunctionRole", {"runs", "models"}),
    ("PromoteFunctionRole", {"runs", "models"}),
])
def test_s3_object_access_is_limited_to_the_prefixes_each_function_touches(cfn, role, prefixes):
    touched = set()
    for r, actions, resources, _ in allow_statements(cfn):
        if r == role and any(a.startswith("s3:") and a != "s3:ListBucket" for a in actions):
            touched |= {re.sub(BUCKET + r"/", "", res).split("/")[0] for res in resources}
    assert "datasets" in touched or "runs" in touched
    assert touched <= prefixes


def test_the_allow_list_catches_a_new_wildcard(cfn):
    import copy

    broken = copy.deepcopy(cfn)
    broken["Resources"]["CheckImageFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]\
        .append({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})

    def offenders(template):
        return {(role, res) for role, actions, resources, _ in allow_statements(template)
                for res in resources for a in actions if "*" in res and not _allowed(role, a, res)}

    assert offenders(broken) - offenders(cfn) == {("CheckImageFunctionRole", "*")}
