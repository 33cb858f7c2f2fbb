"""The template wires what the money and exact-data code needs (issue 18, items 4 and 5)."""

from __future__ import annotations

from yoloops_core import ledger_check
from yoloops_core.run_metrics import METRICS_NAMESPACE


def _statements(resource):
    for policy in resource["Properties"].get("Policies") or []:
        if isinstance(policy, dict):
            yield from policy.get("Statement") or []


def _actions(resource):
    out = set()
    for st in _statements(resource):
        acts = st.get("Action")
        out |= set(acts if isinstance(acts, list) else [acts])
    return out


def test_the_ledger_drift_alarm_reads_the_metric_the_refresh_job_publishes(resources, template):
    alarm = resources["LedgerDriftAlarm"]["Properties"]
    assert alarm["Namespace"] == METRICS_NAMESPACE and alarm["MetricName"] == ledger_check.METRIC_NAME
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    env = resources["RefreshPricesFunction"]["Properties"]["Environment"]["Variables"]
    assert dims["service"] == "yoloops"
    assert dims["Budget"] == env["LEDGER_CHECK_BUDGET_NAME"]  # the budget the function compares with
    budget_name = resources["SageMakerBudget"]["Properties"]["Budget"]["BudgetName"]
    assert dims["Budget"] == budget_name  # the stack's own AWS Budget
    assert alarm["Threshold"] == {"Ref": "LedgerDriftAlarmUsd"} and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert "LedgerDriftAlarmUsd" in template["Parameters"]
    assert "budgets:ViewBudget" in _actions(resources["RefreshPricesFunction"])


def test_a_price_of_zero_cannot_be_deployed(template):
    import re

    pattern = template["Parameters"]["HourlyPriceOverrideUsd"]["AllowedPattern"]
    for bad in ("0", "0.0", "00.000", "-1"):
        assert not re.fullmatch(pattern, bad), bad
    for good in ("", "1.408", "0.5", "12"):
        assert re.fullmatch(pattern, good), good


def test_the_functions_may_make_the_calls_settling_and_snapshots_need(resources):
    assert "sagemaker:DescribeTrainingJob" in _actions(resources["NotifyFunction"])  # settle from billing
    assert "dynamodb:Query" in _actions(resources["TrainingEventsFunction"])  # the run's reservations
    assert "s3:PutObject" in _actions(resources["ValidateDatasetFunction"])  # runs/<id>/input/ snapshot
