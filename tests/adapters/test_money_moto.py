"""Every dollar accounted (issue 18, item 5) against moto's DynamoDB: conflicts retried, month boundaries,
a price of 0 refused, a job's end settling its hold, Notify billing a job whose evaluation failed, and the
ledger-vs-AWS-Budgets gap published for the alarm."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import support
from moto import mock_aws
from yoloops_core import budget, ledger_check
from yoloops_core.config import ConfigError, Settings
from yoloops_core.ledger import CONFLICT_TRIES, BudgetLedger
from yoloops_core.models import RunStatus
from yoloops_core.prices import Price
from yoloops_core.reconcile import settle_ended_attempt
from yoloops_core.store import RunStore

TOPIC = "arn:aws:sns:us-east-1:123456789012:yoloops-notifications"
NOV_30 = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)


def _settings(**kw) -> Settings:
    base = {"artifacts_bucket": "b", "runs_table": "runs", "notifications_topic_arn": TOPIC,
            "instance_type": "ml.g5.xlarge", "hourly_price_override_usd": 3.6, "max_runtime_seconds": 3600,
            "monthly_budget_usd": 10.0, "min_runtime_seconds": 600}
    return Settings.model_validate(base | kw)


@pytest.fixture
def ddb():
    with mock_aws():
        from yoloops_core.aws import client

        support.create_runs_table(client("dynamodb"), "runs")
        yield client("dynamodb")


def _admit(ledger, run, now, **kw):
    s = _settings(**kw)
    return budget.admit_attempt(run, 1, s, ledger, use_spot=True, price=budget.price_of(s, now=now), now=now)


class Conflicting:
    """A DynamoDB client whose next `n` transactions are cancelled for a TransactionConflict, as DynamoDB
    does when another transaction holds the month item."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.left, self.calls = inner, n, 0

    def transact_write_items(self, **kwargs):
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                               "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]},
                              "TransactWriteItems")
        return self.inner.transact_write_items(**kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_transaction_conflicts_on_the_month_item_are_retried_for_admission_and_settlement(ddb, monkeypatch):
    monkeypatch.setattr("yoloops_core.ledger.CONFLICT_BACKOFF_S", 0.001)
    flaky = Conflicting(ddb, 3)
    ledger = BudgetLedger("runs", ddb=flaky)
    assert _admit(ledger, "r1", DEC_1).admitted  # three conflicts, then through
    assert flaky.calls == 4
    flaky.left = 2
    done = ledger.settle("r1", 1, billable_seconds=1800, now=DEC_1)
    assert done is not None and done.actual_usd == pytest.approx(1.8)
    assert ledger.totals("2026-12").spent_usd == pytest.approx(1.8)
    # Bounded: a conflict that never clears raises (the step's retry or the event's retry takes over).
    flaky.left = CONFLICT_TRIES
    with pytest.raises(Exception, match="TransactionCanceled"):
        _admit(ledger, "r2", DEC_1)
    assert ledger.reservations("r2") == []


def test_last_months_running_hold_counts_against_this_month_until_settled_then_bills_this_month(ddb):
    ledger = BudgetLedger("runs", ddb=ddb)
    assert _admit(ledger, "late", NOV_30, monthly_budget_usd=10.0).admitted  # $3.60 held in November
    # December 1st: a fresh month, but the November job still runs. $10 - $3.60 leaves $6.40: one more
    # full hour fits, a third would not (without the carried hold it would have: $3.60 x 2 < $10).
    assert _admit(ledger, "d1", DEC_1).admitted
    third = _admit(ledger, "d2", DEC_1)
    assert third.admitted and third.clamped and third.worst_case_usd == pytest.approx(10 - 3.6 - 3.6)
    assert third.in_flight_usd == pytest.approx(7.2)
    # The November job ends in December: its cost counts in December, November's hold is released.
    done = ledger.settle("late", 1, billable_seconds=3600, now=DEC_1)
    assert done.billed_month == "2026-12" and done.month == "2026-11"
    assert ledger.totals("2026-11").reserved_usd == pytest.approx(0.0)
    assert ledger.totals("2026-11").spent_usd == pytest.approx(0.0)
    dec = ledger.totals("2026-12")
    assert dec.spent_usd == pytest.approx(3.6)
    assert dec.committed_usd == pytest.approx(3.6 + 3.6 + 2.8)


def test_a_price_of_zero_is_refused_by_settings_and_by_the_gate(ddb):
    with pytest.raises(ConfigError, match=r"HOURLY_PRICE_OVERRIDE_USD.*turn the budget gate off"):
        Settings.from_env({"ARTIFACTS_BUCKET": "b", "RUNS_TABLE": "runs", "NOTIFICATIONS_TOPIC_ARN": TOPIC,
                           "HOURLY_PRICE_OVERRIDE_USD": "0"})
    with pytest.raises(ValueError, match="refused"):
        _settings(hourly_price_override_usd=0.0)
    free = Price(hourly_usd=0.0, source="price-list-api", as_of="2026-12-01", instance_type="ml.g5.xlarge",
                 region="us-east-1")
    with pytest.raises(ValueError, match="price of 0 would admit every run"):
        budget.admit_attempt("r", 1, _settings(), BudgetLedger("runs", ddb=ddb), use_spot=True, price=free, now=DEC_1)


class FakeSageMaker:
    def __init__(self, jobs: dict[str, dict]) -> None:
        self.jobs, self.described = jobs, []

    def describe_training_job(self, TrainingJobName):
        self.described.append(TrainingJobName)
        if TrainingJobName not in self.jobs:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ValidationException", "Message": "not found"}},
                              "DescribeTrainingJob")
        return self.jobs[TrainingJobName]


def _run(ddb, run_id: str, month_now: datetime) -> RunStore:
    store = RunStore("runs", ddb=ddb)
    store.create_minimal_run(run_id, RunStatus.TRAINING, note="test", now=month_now)
    return store


def test_a_jobs_end_event_settles_its_hold_once_from_the_event_or_describe(ddb):
    ledger = BudgetLedger("runs", ddb=ddb)
    store = _run(ddb, "r1", DEC_1)
    assert _admit(ledger, "r1", DEC_1).admitted
    sm = FakeSageMaker({"r1-a1": {"TrainingJobName": "r1-a1", "TrainingJobStatus": "Stopped",
                                  "BillableTimeInSeconds": 600, "TrainingTimeInSeconds": 900}})
    # Still stopping: nothing to settle yet.
    assert settle_ended_attempt("r1", 1, {"TrainingJobName": "r1-a1", "TrainingJobStatus": "Stopping"},
                                ledger=ledger, store=store, sagemaker=FakeSageMaker({})) is None
    # The Stopped event without billing (AWS may omit it): DescribeTrainingJob gives it.
    done = settle_ended_attempt("r1", 1, {"TrainingJobName": "r1-a1", "TrainingJobStatus": "Stopped"},
                                ledger=ledger, store=store, sagemaker=sm, now=DEC_1)
    assert sm.described == ["r1-a1"]
    assert done.actual_usd == pytest.approx(0.6) and done.training_seconds == pytest.approx(900)
    assert float(store.get_run("r1")["cost_usd"]) == pytest.approx(0.6)
    # A re-sent event settles nothing twice.
    assert settle_ended_attempt("r1", 1, {"TrainingJobName": "r1-a1", "TrainingJobStatus": "Stopped",
                                          "BillableTimeInSeconds": 3600}, ledger=ledger, store=store,
                                sagemaker=sm, now=DEC_1) is None
    totals = ledger.totals("2026-12")
    assert totals.spent_usd == pytest.approx(0.6) and totals.reserved_usd == pytest.approx(0.0)


def test_notify_bills_a_completed_job_whose_evaluation_failed_from_describe_not_zero(ddb):
    from yoloops_core.outcomes import notify

    ledger = BudgetLedger("runs", ddb=ddb)
    store = _run(ddb, "r2", DEC_1)
    assert _admit(ledger, "r2", DEC_1).admitted
    store.record_job("r2", 1, "r2-a1", now=DEC_1)
    sm = FakeSageMaker({"r2-a1": {"TrainingJobName": "r2-a1", "TrainingJobStatus": "Completed",
                                  "BillableTimeInSeconds": 1200}})
    published = []
    sns = type("Sns", (), {"publish": lambda self, **kw: published.append(kw) or {"MessageId": "m"}})()
    state = {"run": {"run_id": "r2", "dataset": {"name": "d", "version": "v"}},
             "training": {"job_name": "r2-a1", "status": "Completed"},
             "error": {"Error": "MetricsMissing", "Cause": json.dumps({"errorMessage": "no mAP50-95"})}}
    notify({"outcome": "failed", "run_id": "r2", "state": state}, settings=_settings(), store=store, sns=sns,
           ledger=ledger, sagemaker=sm, now=DEC_1)
    [res] = ledger.reservations("r2")
    assert res.state == "settled" and res.actual_usd == pytest.approx(1.2)
    assert float(store.get_run("r2")["cost_usd"]) == pytest.approx(1.2)
    assert "$1.20" in published[0]["Message"] or "1.2" in published[0]["Message"]


def test_notify_leaves_a_still_running_jobs_hold_for_its_end_event(ddb):
    from yoloops_core.outcomes import notify

    ledger = BudgetLedger("runs", ddb=ddb)
    store = _run(ddb, "r3", DEC_1)
    assert _admit(ledger, "r3", DEC_1).admitted
    store.record_job("r3", 1, "r3-a1", now=DEC_1)
    sm = FakeSageMaker({"r3-a1": {"TrainingJobName": "r3-a1", "TrainingJobStatus": "InProgress"}})
    sns = type("Sns", (), {"publish": lambda self, **kw: {"MessageId": "m"}})()
    notify({"outcome": "failed", "run_id": "r3", "state": {"run": {"run_id": "r3"}}}, settings=_settings(),
           store=store, sns=sns, ledger=ledger, sagemaker=sm, now=DEC_1)
    assert ledger.reservations("r3")[0].state == "reserved"  # not settled at $0


class FakeBudgets:
    def __init__(self, actual: float) -> None:
        self.actual, self.asked = actual, []

    def describe_budget(self, AccountId, BudgetName):
        self.asked.append((AccountId, BudgetName))
        return {"Budget": {"BudgetName": BudgetName,
                           "CalculatedSpend": {"ActualSpend": {"Amount": str(self.actual), "Unit": "USD"}}}}


def test_the_ledgers_gap_to_aws_budgets_is_published_for_the_alarm(ddb, capsys):
    ledger = BudgetLedger("runs", ddb=ddb)
    assert _admit(ledger, "r4", DEC_1).admitted
    ledger.settle("r4", 1, billable_seconds=3600, now=DEC_1)  # $3.60 in the books
    budgets = FakeBudgets(actual=19.6)  # the bill says $19.60: $16 escaped the books
    s = _settings(ledger_check_budget_name="yoloops-dev-sagemaker")
    drift = ledger_check.check_and_publish(s, ledger, budgets, account="123456789012", now=DEC_1)
    assert budgets.asked == [("123456789012", "yoloops-dev-sagemaker")]
    assert drift.trailing_usd == pytest.approx(16.0) and drift.ledger_spent_usd == pytest.approx(3.6)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines()
           if line.startswith("{") and "_aws" in line]
    [blob] = [b for b in emf if ledger_check.METRIC_NAME in b]
    value = blob[ledger_check.METRIC_NAME]
    assert (value[0] if isinstance(value, list) else value) == pytest.approx(16.0)
    assert blob["Budget"] == "yoloops-dev-sagemaker" and blob["service"] == "yoloops"
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "yoloops"
    # No budget configured: nothing to compare, nothing published.
    assert ledger_check.check_and_publish(_settings(), ledger, budgets, account="1", now=DEC_1) is None
