"""template.yaml against the contracts in docs/architecture.md, the ASL, Settings and samconfig.toml.

Pure parsing (no tools, no network): these catch the mistakes sam validate and cfn-lint cannot see,
like a trigger that misses multipart uploads or a secret value in a function's environment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from yoloops_core.config import Settings
from yoloops_core.models import DatasetRef, RunContext, job_name, run_id_for_release
from yoloops_core.pricing import HOURLY_PRICE_USD

ROOT = Path(__file__).resolve().parents[2]
TRIGGERS = {"S3TriggerFunction", "GithubWebhookFunction"}
ASYNC_FUNCTIONS = {"SlackNotifierFunction", "TrainingEventsFunction"}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}


def environment(resource: dict[str, Any]) -> dict[str, Any]:
    return resource["Properties"].get("Environment", {}).get("Variables", {})


def refs(value: Any) -> set[str]:
    """Every logical id a fragment points at (Ref, GetAtt, ${X} / ${X.Attr} inside Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
            found |= refs(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= refs(inner)
    return found


def policy_statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in resource["Properties"].get("Policies", []) for s in p.get("Statement", [])]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------ functions and code


def test_architecture_function_table_is_parsed(function_table):
    # Guards the regex the other tests rely on: the table lists every functions/<dir>.
    dirs = {p.parent.name for p in (ROOT / "functions").glob("*/app.py")}
    assert len(function_table) >= 11 and set(function_table.values()) == dirs, function_table


def test_every_documented_function_is_in_the_template(resources, function_table):
    for logical_id, directory in function_table.items():
        assert logical_id in resources, f"{logical_id} (functions/{directory}) missing from template.yaml"
        assert resources[logical_id]["Type"] == "AWS::Serverless::Function"
        assert resources[logical_id]["Properties"]["CodeUri"] == f"functions/{directory}/"
    assert set(functions(resources)) == set(function_table), "template has functions the docs do not list"


def test_every_function_dir_has_a_handler(function_table):
    missing = []
    for directory in sorted(function_table.values()):
        app = ROOT / "functions" / directory / "app.py"
        if not app.is_file() or "def lambda_handler" not in app.read_text():
            missing.append(str(app.relative_to(ROOT)))
    assert not missing, f"handlers missing (Globals Handler is app.lambda_handler): {missing}"


def test_globals_runtime_layer_and_handler(template, resources):
    glob = template["Globals"]["Function"]
    assert glob["Runtime"] == "python3.12"
    assert glob["Handler"] == "app.lambda_handler"
    assert glob["Layers"] == [{"Ref": "YoloopsLayer"}]
    assert glob["Tracing"] == "Active"
    layer = resources["YoloopsLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/yoloops/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == glob["Architectures"]
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert (ROOT / "layers/yoloops/requirements.txt").is_file()
    for name, fn in functions(resources).items():
        assert "Runtime" not in fn["Properties"] and "Handler" not in fn["Properties"], name


# ------------------------------------------------------------------ state machine


def test_substitutions_match_the_asl_and_the_contract(resources, asl_text, architecture):
    subs = resources["TrainingStateMachine"]["Properties"]["DefinitionSubstitutions"]
    used_in_asl = set(re.findall(r"\$\{(\w+)\}", asl_text))
    contract = set(re.findall(r"`(\w+)`", architecture.split("Substitutions:", 1)[1].split(".\n", 1)[0]))
    assert set(subs) == used_in_asl, f"ASL uses {sorted(used_in_asl)}, template gives {sorted(subs)}"
    assert set(subs) == contract
    for key, value in subs.items():
        target = key.removesuffix("Arn")
        if key == "SageMakerRoleArn":
            target = "SageMakerExecutionRole"
        assert value == {"Fn::GetAtt": [target, "Arn"]}, key


def test_state_machine_logging_and_definition(resources):
    props = resources["TrainingStateMachine"]["Properties"]
    assert props["DefinitionUri"] == "statemachine/training.asl.json"
    assert props["Type"] == "STANDARD"  # .sync integrations and 90-day name idempotency need STANDARD
    assert props["Logging"]["Level"] in {"ALL", "ERROR"}
    assert props["Logging"]["IncludeExecutionData"] is False
    log_group = props["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    assert resources[log_group["Fn::GetAtt"][0]]["Type"] == "AWS::Logs::LogGroup"
    assert props["Tracing"]["Enabled"] is True


def test_state_machine_may_invoke_every_step_function_and_run_sagemaker_sync(resources):
    props = resources["TrainingStateMachine"]["Properties"]
    statements = policy_statements(resources["TrainingStateMachine"])
    # Exact function ARNs (not SAM's LambdaInvokePolicy, which grants function:<name>*).
    assert not any("LambdaInvokePolicy" in p for p in props["Policies"])
    invokable = {r["Fn::GetAtt"][0] for s in statements if s["Action"] == "lambda:InvokeFunction"
                 for r in as_list(s["Resource"])}
    step_functions = {v["Fn::GetAtt"][0] for k, v in props["DefinitionSubstitutions"].items() if "Function" in k}
    assert invokable == step_functions
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
            "sagemaker:AddTags", "events:PutTargets", "events:PutRule", "events:DescribeRule",
            "iam:PassRole"} <= actions
    rule = next(s for s in statements if "events:PutRule" in as_list(s["Action"]))
    assert "rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule" in rule["Resource"]["Fn::Sub"]
    pass_role = next(s for s in statements if "iam:PassRole" in as_list(s["Action"]))
    assert pass_role["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}


def test_step_functions_do_not_reference_the_state_machine(resources):
    # The state machine references their ARNs; a reference back would be a circular dependency.
    with_arn = {name for name, fn in functions(resources).items() if "STATE_MACHINE_ARN" in environment(fn)}
    assert with_arn == TRIGGERS
    for name in TRIGGERS:
        assert environment(resources[name])["STATE_MACHINE_ARN"] == {"Ref": "TrainingStateMachine"}
    # The step functions are the ones the definition names; functions outside the workflow (reconcile,
    # watchdog) may reference it, as nothing in it references them.
    props = resources["TrainingStateMachine"]["Properties"]
    steps = {v["Fn::GetAtt"][0] for k, v in props["DefinitionSubstitutions"].items() if k.endswith("FunctionArn")}
    for name in steps:
        assert "TrainingStateMachine" not in refs(resources[name]), name


def test_sagemaker_role_is_scoped(resources):
    role = resources["SageMakerExecutionRole"]["Properties"]
    principal = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
    assert principal == "sagemaker.amazonaws.com"
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    secret = [s for s in statements if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    assert [s["Resource"] for s in secret] == [{"Ref": "WandbApiKeySecret"}]
    writes = [s for s in statements if "s3:PutObject" in as_list(s["Action"])]
    written = dumps([s["Resource"] for s in writes])
    assert "/runs/*" in written and "/datasets/*" not in written and "/models/*" not in written


# ------------------------------------------------------------------ triggers


def test_every_dataset_object_event_reaches_the_trigger_batched_through_sqs(resources):
    from yoloops_core.s3_trigger import NOTIFICATION_EVENTS, NOTIFICATION_PREFIX

    bucket = resources["ArtifactsBucket"]
    (queue_conf,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    # ObjectCreated:* covers CompleteMultipartUpload and Copy; :Put alone misses multipart uploads.
    assert [queue_conf["Event"]] == list(NOTIFICATION_EVENTS)
    assert queue_conf["Queue"] == {"Fn::GetAtt": ["UploadsQueue", "Arn"]}
    assert queue_conf["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": NOTIFICATION_PREFIX}]
    assert "LambdaConfigurations" not in bucket["Properties"]["NotificationConfiguration"]  # no Lambda per object
    assert bucket["DependsOn"] == "UploadsQueuePolicy"  # S3 tests its permission to send when configured
    policy = resources["UploadsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert policy["Principal"] == {"Service": "s3.amazonaws.com"} and policy["Action"] == "sqs:SendMessage"
    queue = resources["UploadsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["TriggersDlq", "Arn"]}
    fn = resources["S3TriggerFunction"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * fn["Timeout"]  # AWS's rule for SQS event sources
    (source,) = fn["Events"].values()
    assert source["Type"] == "SQS" and source["Properties"]["Queue"] == {"Fn::GetAtt": ["UploadsQueue", "Arn"]}
    assert source["Properties"]["BatchSize"] == 10000
    assert source["Properties"]["MaximumBatchingWindowInSeconds"] == {"Ref": "UploadBatchWindowSeconds"}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert fn["Environment"]["Variables"]["UPLOADS_QUEUE_URL"] == {"Ref": "UploadsQueue"}


def test_no_function_references_the_bucket_resource(template, resources):
    # The bucket's notification depends on S3TriggerFunction: functions must use the built name.
    assert "ArtifactsBucket" not in refs(template["Globals"])
    for name, fn in functions(resources).items():
        props = {k: v for k, v in fn["Properties"].items() if k != "Events"}
        assert "ArtifactsBucket" not in refs(props), name


def test_bucket_name_is_built_the_same_way_everywhere(template, resources):
    name = resources["ArtifactsBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    assert template["Globals"]["Function"]["Environment"]["Variables"]["ARTIFACTS_BUCKET"] == {"Fn::Sub": name}
    subs = re.findall(r'"Fn::Sub": "([^"]*-artifacts-[^"]*)"', dumps(template))
    assert len(subs) > 5
    for text in subs:
        assert name in text, f"bucket name built differently: {text!r} (expected to contain {name!r})"


def test_github_webhook_is_public_fast_and_reserves_concurrency_only_when_asked(template, resources):
    props = resources["GithubWebhookFunction"]["Properties"]
    assert props["FunctionUrlConfig"]["AuthType"] == "NONE"
    # Off by default: a new account's quota of 10 rejects any reservation.
    assert props["ReservedConcurrentExecutions"] == {"Fn::If": [
        "HasWebhookReservedConcurrency", {"Ref": "WebhookReservedConcurrency"}, {"Ref": "AWS::NoValue"}]}
    assert template["Conditions"]["HasWebhookReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "WebhookReservedConcurrency"}, 0]}]}
    assert template["Parameters"]["WebhookReservedConcurrency"]["Default"] == 0
    assert props["Timeout"] < 10  # GitHub gives up after 10 s
    allowed = {s["SecretArn"]["Ref"] for p in props["Policies"] for s in p.values() if "SecretArn" in s}
    assert allowed == {"GithubWebhookSecret"}


def resources_param_default(resources: dict[str, Any], ref: dict[str, str]) -> Any:
    import yaml  # only for Parameters defaults, which are plain scalars

    params = yaml.safe_load(
        re.search(r"^Parameters:\n(.*?)^\S", (ROOT / "template.yaml").read_text(), re.M | re.S).group(1)
    )
    return params[ref["Ref"]]["Default"]


def test_training_events_rule_matches_this_stacks_jobs_only(resources):
    """The rule selects the jobs tagged yoloops:stack=<this stack> (the tag build_plan puts on every job);
    another stack's jobs and jobs that are not yoloops' never reach the function."""
    from yoloops_core.plan import build_plan

    event = resources["TrainingEventsFunction"]["Properties"]["Events"]["TrainingJobStateChange"]
    assert event["Type"] == "EventBridgeRule"
    pattern = event["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker Training Job State Change"]
    assert pattern["detail"] == {"Tags": {"yoloops:stack": [{"Ref": "AWS::StackName"}]}}
    run = RunContext(run_id=run_id_for_release("acme/detector", "v2.0.0", 1), dataset=DatasetRef(name="coco8",
                     version="v1"), trigger={"source": "github", "ref": "v2.0.0"}, image_uri="img",
                     started_at="2026-11-28T00:00:00Z")
    settings = Settings(artifacts_bucket="b", runs_table="t", notifications_topic_arn="arn", stack_name="yoloops-dev",
                        stack_code="51af3dc0")
    tags = {t["Key"]: t["Value"] for t in build_plan(run, "img", settings)["tags"]}
    assert tags["yoloops:stack"] == "yoloops-dev"
    assert job_name(run.run_id, 3, settings.stack_code).endswith("-51af3dc0-a3")


def test_async_functions_have_dead_letter_queues_and_bounded_retries(resources):
    for name in ASYNC_FUNCTIONS:
        props = resources[name]["Properties"]
        dlq = props["DeadLetterQueue"]
        assert dlq["Type"] == "SQS", name
        assert resources[dlq["TargetArn"]["Fn::GetAtt"][0]]["Type"] == "AWS::SQS::Queue", name
        assert 0 <= props["EventInvokeConfig"]["MaximumRetryAttempts"] <= 2, name
    slack_events = resources["SlackNotifierFunction"]["Properties"]["Events"].values()
    assert [e["Properties"]["Topic"] for e in slack_events if e["Type"] == "SNS"] == [
        {"Ref": "NotificationsTopic"}
    ]


# ------------------------------------------------------------------ configuration


def all_environment_names(template, resources) -> dict[str, Any]:
    names = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    for fn in functions(resources).values():
        names.update(environment(fn))
    return names


def test_every_environment_variable_is_a_settings_field(template, resources):
    fields = set(Settings.model_fields)
    unknown = [
        n for n in all_environment_names(template, resources)
        if not n.startswith("POWERTOOLS_") and n.lower() not in fields
    ]
    assert not unknown, f"env vars no Settings field reads (typo?): {unknown}"


def test_required_settings_are_always_set(template):
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    required = [n.upper() for n, f in Settings.model_fields.items() if f.is_required()]
    assert required and all(n in env for n in required), required


def test_no_secret_value_reaches_an_environment(template, resources):
    secrets = {k for k, v in resources.items() if v["Type"] == "AWS::SecretsManager::Secret"}
    assert secrets == {"SlackWebhookSecret", "SlackBotTokenSecret", "SlackSigningSecret", "GithubWebhookSecret",
                       "GithubTokenSecret", "WandbApiKeySecret"}
    for name, value in all_environment_names(template, resources).items():
        if re.search(r"SECRET|KEY|TOKEN|PASSWORD|WEBHOOK", name):
            assert name.endswith("_ARN") and value in [{"Ref": s} for s in secrets], name
        assert not re.search(r"hooks\.slack\.com|ghp_|xox[abp]-|AKIA", dumps(value)), name
    for secret in secrets:
        props = resources[secret]["Properties"]
        assert "SecretString" not in props, f"{secret}: values are set after deploy, never in the template"
        assert "GenerateSecretString" in props


def test_instance_types_all_have_a_price(template):
    param = template["Parameters"]["InstanceType"]
    unpriced = [t for t in param["AllowedValues"] if t not in HOURLY_PRICE_USD]
    assert not unpriced, f"the budget gate cannot price {unpriced}"
    assert param["Default"] in param["AllowedValues"]


def test_outputs_cover_the_contract(template, architecture):
    # The body of the "Stack outputs" section (its heading mentions `Outputs` itself).
    section = architecture.split("## Stack outputs", 1)[1].split("\n", 1)[1].split("\n## ", 1)[0]
    keys = set(re.findall(r"`([A-Z]\w+)`", section))
    assert len(keys) >= 10
    assert keys <= set(template["Outputs"]), keys - set(template["Outputs"])
    assert template["Outputs"]["GithubWebhookUrl"]["Value"] == {
        "Fn::GetAtt": ["GithubWebhookFunctionUrl", "FunctionUrl"]
    }


# ------------------------------------------------------------------ storage, alarms, budget


def test_bucket_is_private_encrypted_versioned_and_tls_only(resources):
    props = resources["ArtifactsBucket"]["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    statement = resources["ArtifactsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = props["LifecycleConfiguration"]["Rules"]
    runs = next(r for r in rules if r.get("Prefix") == "runs/")
    assert [t["StorageClass"] for t in runs["Transitions"]] == ["STANDARD_IA", "GLACIER_IR"]
    assert any("ExpirationInDays" in r and "checkpoints/" in r.get("Prefix", "") for r in rules)
    assert any("NoncurrentVersionExpiration" in r and "Prefix" not in r for r in rules)


def test_tables_match_the_dynamodb_contract(resources):
    runs = resources["RunsTable"]["Properties"]
    assert [k["AttributeName"] for k in runs["KeySchema"]] == ["pk", "sk"]
    gsi = runs["GlobalSecondaryIndexes"][0]
    assert gsi["IndexName"] == "by_month"
    assert [k["AttributeName"] for k in gsi["KeySchema"]] == ["month", "started_at"]
    assert runs["BillingMode"] == "PAY_PER_REQUEST"
    assert runs["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert runs["SSESpecification"]["SSEEnabled"] is True
    idem = resources["IdempotencyTable"]["Properties"]
    assert [k["AttributeName"] for k in idem["KeySchema"]] == ["id"]
    assert idem["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


def test_alarms_watch_the_notify_step_and_every_dlq(resources):
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert all(a["AlarmActions"] == [{"Ref": "NotificationsTopic"}] for a in alarms)
    # Handled outcomes (rejected, blocked, failed) are notified by the workflow; an ExecutionsFailed
    # alarm would repeat each of them. The alarm is for an outcome that may not have been notified.
    assert not [a for a in alarms if a.get("MetricName") == "ExecutionsFailed"]
    errors = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms if a.get("MetricName") == "Errors"}
    assert errors >= {"NotifyFunction", "RefreshPricesFunction"}
    # Every queue something dead-letters into is alarmed on arrivals (NumberOfMessagesSent, Sum, >= 1 within
    # 5 minutes), never on depth alone: depth stays >= 1 for the retention period and hides later failures.
    dlqs: set[str] = set()
    for res in resources.values():
        props = res.get("Properties") or {}
        dlqs |= refs(props.get("DeadLetterQueue")) | refs(props.get("RedrivePolicy"))
        for ev in (props.get("Events") or {}).values():
            dlqs |= refs((ev.get("Properties") or {}).get("DeadLetterConfig"))
    assert dlqs >= {"NotificationsDlq", "TriggersDlq"}

    def sent_alarm(a):
        stats = [a] if "MetricName" in a else [
            {**m["MetricStat"]["Metric"], "Statistic": m["MetricStat"]["Stat"], "Period": m["MetricStat"]["Period"]}
            for m in a.get("Metrics", []) if "MetricStat" in m]
        for st in stats:
            if st["MetricName"] == "NumberOfMessagesSent" and st["Statistic"] == "Sum" and st["Period"] <= 300:
                assert a["Threshold"] == 1 and a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
                assert a["TreatMissingData"] == "notBreaching"
                return st["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        return None

    assert {sent_alarm(a) for a in alarms} >= dlqs
    assert not [a for a in alarms if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"]


def test_budget_alerts_at_80_and_100_percent_of_the_parameter(resources):
    budget = resources["SageMakerBudget"]["Properties"]
    assert budget["Budget"]["BudgetLimit"]["Amount"] == {"Ref": "MonthlyBudgetUsd"}
    assert budget["Budget"]["CostFilters"]["Service"] == ["Amazon SageMaker"]
    thresholds = sorted(n["Notification"]["Threshold"] for n in budget["NotificationsWithSubscribers"])
    assert thresholds == [80, 100]
    for n in budget["NotificationsWithSubscribers"]:
        assert {"SubscriptionType": "SNS", "Address": {"Ref": "NotificationsTopic"}} in n["Subscribers"]


# ------------------------------------------------------------------ samconfig.toml


@pytest.mark.parametrize(("env", "stack"), [("default", "yoloops-dev"), ("prod", "yoloops-prod")])
def test_samconfig_environments_deploy_valid_parameters(samconfig, template, env, stack):
    assert samconfig[env]["global"]["parameters"]["stack_name"] == stack
    deploy = samconfig[env]["deploy"]["parameters"]
    assert "CAPABILITY_IAM" in deploy["capabilities"]
    assert deploy["resolve_s3"] is True
    params = template["Parameters"]
    for override in deploy["parameter_overrides"]:
        key, _, value = override.partition("=")
        assert key in params, f"{env}: unknown parameter {key}"
        allowed = params[key].get("AllowedValues")
        assert allowed is None or value in [str(a) for a in allowed], f"{env}: {key}={value}"
        if params[key]["Type"] == "Number":
            assert float(value) >= float(params[key].get("MinValue", float("-inf"))), f"{env}: {key}"
