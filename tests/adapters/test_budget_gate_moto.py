"""Budget gate v2 against moto's DynamoDB: boundaries, clamp, retries, settlement, concurrency.

The property test runs random interleavings of admissions, retries, finishes and failures from real
threads; whatever the schedule, the worst cases admitted and not yet settled never sum past the
budget, and when everything has ended no reservation is left holding money.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime

import pytest
import support
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from moto import mock_aws
from yoloops_core import budget
from yoloops_core.config import Settings
from yoloops_core.ledger import BudgetLedger

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:yoloops-notifications"


def _settings(**kw) -> Settings:
    base = {"artifacts_bucket": "b", "runs_table": "runs", "notifications_topic_arn": TOPIC,
            "instance_type": "ml.g5.xlarge", "hourly_price_override_usd": 3.6, "max_runtime_seconds": 3600,
            "monthly_budget_usd": 10.0, "min_runtime_seconds": 600}
    base.update(kw)
    return Settings.model_validate(base)


class OneRequestAtATime:
    """DynamoDB executes each request atomically; moto's in-memory tables do not under threads
    ("dictionary changed size during iteration"). Serializing whole requests restores what DynamoDB
    guarantees, and nothing more: threads still interleave between requests (read, then reserve)."""

    def __init__(self, inner) -> None:
        self._inner, self._lock = inner, threading.Lock()

    def __getattr__(self, name):
        call = getattr(self._inner, name)

        def locked(*args, **kwargs):
            with self._lock:
                return call(*args, **kwargs)

        return locked


@pytest.fixture
def ledger():
    with mock_aws():
        from yoloops_core.aws import client

        support.create_runs_table(client("dynamodb"), "runs")
        yield BudgetLedger("runs", ddb=OneRequestAtATime(client("dynamodb")))


def _admit(ledger, run, attempt=1, **kw):
    s = _settings(**kw)
    return budget.admit_attempt(run, attempt, s, ledger, use_spot=True, price=budget.price_of(s), now=NOW)


def test_exactly_at_the_limit_is_admitted_and_one_cent_over_is_not(ledger):
    # $3.60/h x 1 h = $3.60 worst case; budget $10.80 fits exactly three.
    for run in ("a", "b", "c"):
        d = _admit(ledger, run, monthly_budget_usd=10.80)
        assert d.admitted and not d.clamped and d.worst_case_usd == pytest.approx(3.6), run
    assert ledger.totals("2026-12").reserved_usd == pytest.approx(10.8)
    # What is left ($0.59) buys less than MinRuntime: refused, and nothing was reserved for it.
    d = _admit(ledger, "d", monthly_budget_usd=10.80 + 0.59)
    assert not d.admitted and "MinRuntimeSeconds" in d.reason
    assert ledger.reservations("d") == []
    # One cent over: a $3.60 worst case against a $3.59 budget (no clamp allowed) is refused.
    fresh = BudgetLedgerOnFreshMonth(ledger, "2027-01")
    assert not _admit(fresh, "e", monthly_budget_usd=3.59, min_runtime_seconds=3600).admitted
    assert _admit(fresh, "f", monthly_budget_usd=3.60, min_runtime_seconds=3600).admitted


class BudgetLedgerOnFreshMonth:
    """The same table, another (empty) month: a clean slate without a second moto account."""

    def __init__(self, inner: BudgetLedger, month: str) -> None:
        self.inner, self.month = inner, month

    def totals(self, month):
        return self.inner.totals(self.month)

    def reserve(self, res, budget_usd, extra_spent_usd=0.0, now=None):
        return self.inner.reserve(res.model_copy(update={"month": self.month}), budget_usd, extra_spent_usd, now)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_clamp_when_the_rest_buys_at_least_min_runtime_and_refusal_below_it(ledger):
    assert _admit(ledger, "a", monthly_budget_usd=5.0).admitted  # $3.60 held, $1.40 left
    d = _admit(ledger, "b", monthly_budget_usd=5.0)  # $1.40 buys 1400 s >= 600 s
    assert d.admitted and d.clamped and d.max_runtime_seconds == 1400
    assert d.worst_case_usd == pytest.approx(1.4)
    assert ledger.totals("2026-12").committed_usd <= 5.0 + 1e-9
    d = _admit(ledger, "c", monthly_budget_usd=5.0)  # nothing left: below the minimum
    assert not d.admitted and "less than MinRuntimeSeconds (600 s)" in d.reason


def test_re_invoked_admission_is_idempotent_and_settlement_turns_reservation_into_cost(ledger):
    first = _admit(ledger, "a")
    again = _admit(ledger, "a")
    assert first.admitted and again.admitted
    assert ledger.totals("2026-12").reserved_usd == pytest.approx(3.6)  # held once
    done = ledger.settle("a", 1, billable_seconds=1800, training_seconds=3600)
    assert done is not None and done.actual_usd == pytest.approx(1.8)
    assert ledger.settle("a", 1, billable_seconds=1800) is None  # once only
    totals = ledger.totals("2026-12")
    assert totals.reserved_usd == pytest.approx(0.0) and totals.spent_usd == pytest.approx(1.8)
    cost = budget.run_cost(ledger.reservations("a"))
    assert cost.cost_usd == pytest.approx(1.8) and cost.spot_savings_pct == pytest.approx(50.0)


def test_each_retry_reserves_again_and_a_retry_that_no_longer_fits_is_refused(ledger):
    assert _admit(ledger, "a", attempt=1, monthly_budget_usd=8.0).admitted
    ledger.settle("a", 1, billable_seconds=3600)  # attempt 1 billed its full hour
    assert _admit(ledger, "a", attempt=2, monthly_budget_usd=8.0).admitted  # $3.60 + $3.60 <= $8
    ledger.settle("a", 2, billable_seconds=3600)
    third = _admit(ledger, "a", attempt=3, monthly_budget_usd=8.0)  # $0.80 left buys 800 s: clamped
    assert third.admitted and third.clamped and third.max_runtime_seconds == 800
    ledger.settle("a", 3, billable_seconds=800)
    assert not _admit(ledger, "a", attempt=4, monthly_budget_usd=8.0).admitted
    assert budget.run_cost(ledger.reservations("a")).cost_usd == pytest.approx(8.0)


def test_aws_budgets_spend_counts_when_it_is_larger(ledger):
    class Budgets:
        def describe_budget(self, AccountId, BudgetName):
            assert AccountId == "123456789012" and BudgetName == "team"
            return {"Budget": {"CalculatedSpend": {"ActualSpend": {"Amount": "7.5", "Unit": "USD"}}}}

    s = _settings(budget_name="team")
    d = budget.admit_attempt("a", 1, s, ledger, use_spot=True, price=budget.price_of(s), budgets=Budgets(), now=NOW)
    assert d.spent_usd == pytest.approx(7.5) and d.clamped and d.max_runtime_seconds == 2500


# ---------------------------------------------------------------- concurrency property

_EXAMPLES = itertools.count()
OPS = st.lists(st.sampled_from(["admit", "retry", "finish", "fail"]), min_size=4, max_size=10)


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedules=st.lists(OPS, min_size=2, max_size=5), budget_usd=st.sampled_from([5.0, 7.2, 10.0, 12.5]),
       billed=st.lists(st.integers(0, 3600), min_size=10, max_size=10))
def test_concurrent_interleavings_never_overshoot_and_never_leak(ledger, schedules, budget_usd, billed):
    example = next(_EXAMPLES)
    month = f"{2100 + example}-01"  # a fresh month item per example, same table
    billed_at = datetime(2100 + example, 1, 15, tzinfo=UTC)  # settled in that month: the cost counts there
    s = _settings(monthly_budget_usd=budget_usd, min_runtime_seconds=600)
    price = budget.price_of(s)
    tag = str(example)
    start = threading.Barrier(len(schedules))
    overshoot: list[float] = []
    errors: list[BaseException] = []

    books = BudgetLedgerOnFreshMonth(ledger, month)

    def worker(i: int, ops: list[str]) -> None:
        run, attempt, held = f"r{tag}-{i}", 1, False
        try:
            start.wait()
            for j, op in enumerate(ops):
                if op in ("admit", "retry") and not held:  # a first attempt or a retry: admitted alike
                    held = budget.admit_attempt(run, attempt, s, books, use_spot=True, price=price,
                                                now=NOW).admitted
                    totals = ledger.totals(month)
                    if totals.committed_usd > budget_usd + 1e-6:
                        overshoot.append(totals.committed_usd)
                elif op in ("finish", "fail") and held:
                    ledger.settle(run, attempt, billable_seconds=billed[j % len(billed)], now=billed_at)
                    held = False
                    attempt += 1
            if held:  # every run ends: nothing may stay reserved
                ledger.settle(run, attempt, billable_seconds=billed[0], now=billed_at)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, ops)) for i, ops in enumerate(schedules)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not overshoot, f"committed {overshoot} > budget {budget_usd}"
    totals = ledger.totals(month)
    assert totals.reserved_usd == pytest.approx(0.0, abs=1e-6)  # no leaked reservation
    assert totals.spent_usd <= budget_usd + 1e-6
    all_res = [r for i in range(len(schedules)) for r in ledger.reservations(f"r{tag}-{i}")]
    assert all(r.state == "settled" for r in all_res)
    assert sum(r.actual_usd for r in all_res) == pytest.approx(totals.spent_usd, abs=1e-5)
