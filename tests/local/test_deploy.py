"""The template walker on a small SAM template: parameters, conditions, intrinsics, wiring."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from yoloops.local import LocalStack, ScriptedTrainingBackend
from yoloops.local.deploy import DeployError

TEMPLATE = textwrap.dedent("""
    AWSTemplateFormatVersion: "2010-09-09"
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Flag: {Type: String, Default: "false", AllowedValues: ["true", "false"]}
      Greeting: {Type: String, Default: hello}
    Conditions:
      WithTopic: !Equals [!Ref Flag, "true"]
    Globals:
      Function:
        Runtime: python3.12
        Timeout: 10
        Environment:
          Variables:
            TABLE: !Ref Table
    Resources:
      Table:
        Type: AWS::DynamoDB::Table
        Properties:
          BillingMode: PAY_PER_REQUEST
          KeySchema: [{AttributeName: pk, KeyType: HASH}]
          AttributeDefinitions: [{AttributeName: pk, AttributeType: S}, {AttributeName: m, AttributeType: S}]
          GlobalSecondaryIndexes:
            - IndexName: by_m
              KeySchema: [{AttributeName: m, KeyType: HASH}]
              Projection: {ProjectionType: ALL}
          TimeToLiveSpecification: {AttributeName: ttl, Enabled: true}
      Bucket:
        Type: AWS::S3::Bucket
        Properties:
          BucketName: !Sub "${AWS::StackName}-data-${AWS::AccountId}"
      Topic:
        Type: AWS::SNS::Topic
        Condition: WithTopic
      Fn:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: fn/
          Handler: app.lambda_handler
          Environment:
            Variables:
              GREETING: !Sub "${Greeting}, ${AWS::Region}"
              BUCKET: !Sub "${AWS::StackName}-data-${AWS::AccountId}"
              TOPIC: !If [WithTopic, !Ref Topic, !Ref "AWS::NoValue"]
          Events:
            Manifest:
              Type: S3
              Properties:
                Bucket: !Ref Bucket
                Events: s3:ObjectCreated:*
                Filter:
                  S3Key:
                    Rules: [{Name: Suffix, Value: manifest.json}]
      Machine:
        Type: AWS::Serverless::StateMachine
        Properties:
          DefinitionUri: machine.asl.json
          DefinitionSubstitutions:
            FnArn: !GetAtt Fn.Arn
          Policies: [{LambdaInvokePolicy: {FunctionName: !Ref Fn}}]
    Outputs:
      MachineArn: {Value: !Ref Machine}
      BucketName: {Value: !Ref Bucket}
      TableArn: {Value: !GetAtt Table.Arn}
      TopicArn: {Condition: WithTopic, Value: !Ref Topic}
""")

HANDLER = textwrap.dedent("""
    import os
    def lambda_handler(event, context):
        if event.get("boom"):
            raise KeyError("boom requested")
        return {"greeting": os.environ["GREETING"], "table": os.environ["TABLE"],
                "topic": os.environ.get("TOPIC"), "fn": context.function_name, "event": event}
""")

MACHINE = {
    "StartAt": "Call",
    "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": "${FnArn}", "Payload.$": "$"}, "OutputPath": "$.Payload",
                 "Catch": [{"ErrorEquals": ["KeyError"], "ResultPath": "$.error", "Next": "Caught"}], "End": True},
        "Caught": {"Type": "Pass", "End": True},
    },
}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(HANDLER)
    (tmp_path / "machine.asl.json").write_text(json.dumps(MACHINE))
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return tmp_path


def _run(stack, payload):
    sfn = stack.client("stepfunctions")
    # moto names an unnamed execution "None" (AWS: a UUID), so name every execution.
    arn = sfn.start_execution(stateMachineArn=stack.outputs["MachineArn"], name=f"e-{uuid.uuid4().hex[:12]}",
                              input=json.dumps(payload))["executionArn"]
    result = stack.wait_for_execution(arn, timeout=30)
    return result["status"], json.loads(result.get("output") or "null")


def test_template_resources_env_substitutions_and_catch(project):
    with LocalStack(workdir=project / ".local", template=project / "template.yaml",
                    training=ScriptedTrainingBackend()) as stack:
        assert "TopicArn" not in stack.outputs  # condition false
        assert stack.outputs["BucketName"] == "yoloops-local-data-123456789012"
        status, out = _run(stack, {"x": 1})
        assert status == "SUCCEEDED"
        assert out["greeting"] == "hello, us-east-1"
        assert out["table"] == stack.client("dynamodb").describe_table(
            TableName=out["table"])["Table"]["TableName"]
        assert out["topic"] is None  # AWS::NoValue drops the variable
        assert out["event"] == {"x": 1}
        # An exception is a Lambda error: Step Functions' Catch matches the exception type.
        status, out = _run(stack, {"boom": True})
        assert status == "SUCCEEDED"
        assert out["error"]["Error"] == "KeyError"
        cause = json.loads(out["error"]["Cause"])
        assert cause["errorType"] == "KeyError" and "boom requested" in cause["errorMessage"]
        assert cause["stackTrace"]
        table = stack.client("dynamodb").describe_table(TableName=stack.deployment.resources["Table"].ref)
        assert table["Table"]["GlobalSecondaryIndexes"][0]["IndexName"] == "by_m"
        ttl = stack.client("dynamodb").describe_time_to_live(TableName=stack.deployment.resources["Table"].ref)
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "ttl"
        # S3 notification with a suffix filter (written "Suffix": S3 matches the name case-insensitively).
        s3 = stack.client("s3")
        s3.put_object(Bucket=stack.outputs["BucketName"], Key="a/other.txt", Body=b"x")
        s3.put_object(Bucket=stack.outputs["BucketName"], Key="a/manifest.json", Body=b"{}")
        assert stack.lambdas.wait_idle(10)
        keys = [i.event["Records"][0]["s3"]["object"]["key"] for i in stack.lambdas.invocations if i.source == "s3"]
        assert keys == ["a/manifest.json"]


def test_parameters_switch_conditions_and_local_env_overrides(project):
    with LocalStack(workdir=project / ".local", template=project / "template.yaml",
                    parameters={"Flag": "true", "Greeting": "hi"}, function_env={"TABLE": "override"}) as stack:
        assert stack.outputs["TopicArn"].startswith("arn:aws:sns:us-east-1:123456789012:")
        status, out = _run(stack, {})
        assert status == "SUCCEEDED"
        assert (out["greeting"], out["topic"]) == ("hi, us-east-1", stack.outputs["TopicArn"])
        assert out["table"] == "override"


def test_deploy_errors_name_the_problem(project):
    with pytest.raises(DeployError, match="unknown template parameters: \\['Nope'\\]"):
        LocalStack(workdir=project / ".local", template=project / "template.yaml", parameters={"Nope": "1"}).start()
    (project / "machine.asl.json").write_text(json.dumps(MACHINE).replace("${FnArn}", "${Missing}"))
    with pytest.raises(DeployError, match=r"\$\{Missing\}"):
        LocalStack(workdir=project / ".local", template=project / "template.yaml").start()
    # Both failed starts released the process-wide stack slot and left no stack.json behind.
    assert not (project / ".local" / "stack.json").exists()
    (project / "machine.asl.json").write_text(json.dumps(MACHINE))
    LocalStack(workdir=project / ".local", template=project / "template.yaml").start().stop()


@pytest.mark.parametrize("override, problem", [
    ({"InstanceType": "ml.z9.huge"}, "AllowedValues"),
    ({"MaxAttempts": "0"}, "MinValue"),
    ({"AlertEmail": "not-an-email"}, "AllowedPattern"),
])
def test_the_real_template_refuses_parameters_cloudformation_would(tmp_path, override, problem):
    with pytest.raises(DeployError, match=problem), LocalStack(workdir=tmp_path, parameters=override):
        pass
