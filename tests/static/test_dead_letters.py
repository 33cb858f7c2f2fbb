"""Every EventBridge rule's dead letters can land: the queue's policy lets EventBridge send for that rule,
and an alarm watches the queue (a dead letter nobody hears about is a lost run, a lost settlement)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from iam_view import as_list, render, translated


@pytest.fixture(scope="module")
def cfn():
    return translated()


def _queue(arn: Any) -> str:
    """The queue's logical id from a DeadLetterConfig Arn (!GetAtt Q.Arn)."""
    text = render(arn)
    assert text.startswith("${") and text.endswith(".Arn}"), f"dead-letter target {text} is not a queue of the stack"
    return text[2:-5]


def rule_dead_letters(cfn: dict[str, Any]) -> list[tuple[str, str]]:
    """(rule logical id, queue logical id) of every rule target with a DeadLetterConfig."""
    return [(logical, _queue(t["DeadLetterConfig"]["Arn"]))
            for logical, res in cfn["Resources"].items() if res["Type"] == "AWS::Events::Rule"
            for t in res["Properties"].get("Targets") or [] if t.get("DeadLetterConfig")]


def senders(cfn: dict[str, Any], queue: str) -> set[str]:
    """Rules whose events.amazonaws.com SendMessage to `queue` some queue policy allows (by aws:SourceArn)."""
    rules: set[str] = set()
    for res in cfn["Resources"].values():
        if res["Type"] != "AWS::SQS::QueuePolicy" or f"${{{queue}}}" not in map(render, res["Properties"]["Queues"]):
            continue
        for st in as_list(res["Properties"]["PolicyDocument"]["Statement"]):
            services = as_list((st.get("Principal") or {}).get("Service", []))
            if st.get("Effect") != "Allow" or "events.amazonaws.com" not in services \
                    or "sqs:SendMessage" not in as_list(st["Action"]):
                continue
            assert render(st["Resource"]) == f"${{{queue}.Arn}}"
            source = (st.get("Condition") or {}).get("ArnEquals", {}).get("aws:SourceArn")
            assert source, "an EventBridge send permission without aws:SourceArn lets any rule in the account write"
            rules |= {render(s)[2:-5] for s in as_list(source)}
    return rules


def alarmed_queues(cfn: dict[str, Any]) -> set[str]:
    """Queues an alarm watches (QueueName dimension of its metric or of one of its metric queries)."""
    found: set[str] = set()
    for res in cfn["Resources"].values():
        if res["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = res["Properties"]
        dims = list(props.get("Dimensions") or [])
        for query in props.get("Metrics") or []:
            dims += (query.get("MetricStat") or {}).get("Metric", {}).get("Dimensions") or []
        found |= {render(d["Value"])[2:-len(".QueueName}")] for d in dims if d["Name"] == "QueueName"}
    return found


def test_every_rule_with_a_dead_letter_queue_may_write_to_it(cfn):
    pairs = rule_dead_letters(cfn)
    assert {"TrainingEventsFunctionTrainingJobStateChange", "ReconcileFunctionExecutionEnded",
            "ImagePushedFunctionImagePushed"} <= {rule for rule, _ in pairs}
    missing = [f"{rule} -> {queue}" for rule, queue in pairs if rule not in senders(cfn, queue)]
    assert not missing, "rules whose dead letters the queue policy refuses:\n" + "\n".join(missing)


def test_every_dead_letter_queue_has_an_alarm(cfn):
    queues = {q for _, q in rule_dead_letters(cfn)}
    queues |= {_queue(res["Properties"]["DeadLetterConfig"]["TargetArn"]) for res in cfn["Resources"].values()
               if res["Type"] == "AWS::Lambda::Function" and res["Properties"].get("DeadLetterConfig")}
    assert queues and not queues - alarmed_queues(cfn), f"no alarm on {queues - alarmed_queues(cfn)}"


def test_a_rule_left_out_of_the_policy_is_caught(cfn):
    broken = copy.deepcopy(cfn)
    for res in broken["Resources"].values():
        if res["Type"] == "AWS::SQS::QueuePolicy":
            for st in as_list(res["Properties"]["PolicyDocument"]["Statement"]):
                source = (st.get("Condition") or {}).get("ArnEquals", {})
                if "aws:SourceArn" in source:
                    source["aws:SourceArn"] = [s for s in as_list(source["aws:SourceArn"])
                                               if "ReconcileFunction" not in render(s)]
    pairs = rule_dead_letters(broken)
    assert [r for r, q in pairs if r not in senders(broken, q)] == ["ReconcileFunctionExecutionEnded"]
