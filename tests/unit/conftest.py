"""Fakes for the workflow-step unit tests: an in-memory run store, SNS publisher, S3 and validator.

The fake store keeps RunStore's contract, including the champion's conditional write, so the domain
logic can be tested without moto; tests/adapters checks the real RunStore against moto's DynamoDB.
"""

from __future__ import annotations

import copy
import io
import json
import threading
from typing import Any

import pytest
from yoloops_core.config import Settings
from yoloops_core.ledger import MonthTotals, Reservation
from yoloops_core.models import RunContext, RunStatus, iso, utcnow
from yoloops_core.store import ANY_CHAMPION, StoreError, month_of, previous_month

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/yoloops-train:latest"
TOPIC = "arn:aws:sns:us-east-1:123456789012:yoloops-notifications"


def make_settings(**overrides: Any) -> Settings:
    values = {"artifacts_bucket": "yoloops-artifacts-test", "runs_table": "runs", "notifications_topic_arn": TOPIC,
              "training_image_uri": IMAGE, "ecr_repository": "123456789012.dkr.ecr.us-east-1.amazonaws.com/yoloops-train"}
    values.update(overrides)
    return Settings.model_validate(values)


class FakeStore:
    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.champions: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}

    # runs
    def create_run(self, ctx: RunContext, status: RunStatus = RunStatus.STARTED, now=None) -> bool:
        if ctx.run_id in self.runs:
            return False
        at = iso(now or utcnow())
        self.runs[ctx.run_id] = {"run_id": ctx.run_id, "status": status.value, "dataset": ctx.dataset.name,
                                 "dataset_version": ctx.dataset.version, "execution_arn": ctx.execution_arn,
                                 "month": month_of(ctx.started_at), "started_at": ctx.started_at, "attempts": 0,
                                 "job_names": [], "interruptions": 0,
                                 "history": [{"at": at, "status": status.value, "note": "run created"}]}
        return True

    def create_minimal_run(self, run_id, status, note, now=None, **fields) -> bool:
        if run_id in self.runs:
            return False
        at = iso(now or utcnow())
        self.runs[run_id] = {"run_id": run_id, "status": status.value, "month": at[:7], "started_at": at,
                             "attempts": 0, "job_names": [], "interruptions": 0,
                             "history": [{"at": at, "status": status.value, "note": note}],
                             **{k: v for k, v in fields.items() if v is not None}}
        return True

    def get_run(self, run_id):
        return copy.deepcopy(self.runs.get(run_id))

    def update_run(self, run_id, *, status=None, note=None, now=None, add=None, map_entries=None, **fields):
        rec = self.runs[run_id]  # KeyError like the real store's condition failure
        rec.update({k: v for k, v in fields.items() if v is not None})
        if status is not None:
            rec["status"] = status.value
        for key, amount in (add or {}).items():
            rec[key] = rec.get(key, 0) + amount
        for attr, entries in (map_entries or {}).items():
            rec.setdefault(attr, {}).update({str(k): v for k, v in entries.items()})
        if status is not None or note:
            rec.setdefault("history", []).append({"at": iso(now or utcnow()),
                                                  "status": status.value if status else None, "note": note or ""})

    def finish_if_in_flight(self, run_id, status, note, now=None, **fields) -> bool:
        rec = self.runs.get(run_id)
        if rec is None or not RunStatus(rec["status"]).in_flight:
            return False
        self.update_run(run_id, status=status, note=note, now=now, finished_at=iso(now or utcnow()), **fields)
        return True

    def record_job(self, run_id, attempt, job, now=None, status=None, note=None, **fields):
        names = list(self.runs[run_id].get("job_names") or [])
        if job not in names:
            names.append(job)
        self.update_run(run_id, status=status, note=note, now=now, attempts=attempt, job_names=names,
                        current_job=job, **fields)

    def record_attempt_billing(self, run_id, attempt, billable_seconds, training_seconds=None):
        self.update_run(run_id, map_entries={"billable_by_attempt": {str(attempt): billable_seconds}})
        if training_seconds is not None:
            self.update_run(run_id, map_entries={"training_by_attempt": {str(attempt): training_seconds}})
        rec = self.runs[run_id]
        rec["billable_seconds"] = sum(rec["billable_by_attempt"].values())

    def list_runs_by_month(self, month):
        return [copy.deepcopy(r) for r in self.runs.values() if r.get("month") == month]

    def list_in_flight(self, month):
        runs = self.list_runs_by_month(previous_month(month)) + self.list_runs_by_month(month)
        return [r for r in runs if RunStatus(r["status"]).in_flight]

    # the Price List API cache (none in these tests: the shipped table or the override prices)
    def get_price(self, region, instance_type):
        return None

    # champions
    def get_champion(self, dataset):
        return copy.deepcopy(self.champions.get(dataset))

    def put_champion_if_better(self, dataset, run_id, metric, value, metrics, model_key, now=None,
                               min_improvement=0.0, compared_with=ANY_CHAMPION, paired=False, **fields) -> bool:
        cur = self.champions.get(dataset)
        if cur is not None and cur["run_id"] == run_id:
            return True
        if compared_with is not ANY_CHAMPION and (cur or {}).get("run_id") != compared_with:
            return False
        if cur is not None and not paired and not (
                cur["metric_value"] < value and cur["metric_value"] <= value - min_improvement):
            return False
        prev = cur["run_id"] if cur and cur["run_id"] != run_id else (cur or {}).get("previous_run_id")
        self.champions[dataset] = {"run_id": run_id, "metric": metric, "metric_value": value, "metrics": metrics,
                                   "model_key": model_key, "previous_run_id": prev}
        if not cur or cur["run_id"] != run_id:
            self.history.setdefault(dataset, []).insert(0, {"action": "promote", "run_id": run_id,
                                                            "previous_run_id": prev, "metric_value": value})
        return True

    def champion_history(self, dataset):
        return copy.deepcopy(self.history.get(dataset, []))

    def set_champion_manually(self, dataset, run_id, metric, value, metrics, model_key, actor="cli", now=None):
        cur = self.champions.get(dataset)
        self.champions[dataset] = {"run_id": run_id, "metric": metric, "metric_value": value, "metrics": metrics,
                                   "model_key": model_key, "previous_run_id": (cur or {}).get("run_id")}
        self.history.setdefault(dataset, []).insert(0, {"action": "manual_promote", "run_id": run_id})
        return copy.deepcopy(self.champions[dataset])

    def rollback_champion(self, dataset, actor="cli", now=None):
        cur = self.champions.get(dataset)
        if not cur or not cur.get("previous_run_id"):
            raise StoreError("nothing to roll back to")
        self.champions[dataset] = {"run_id": cur["previous_run_id"], "metric": cur["metric"], "metric_value": None,
                                   "metrics": {}, "model_key": "", "previous_run_id": None}
        return copy.deepcopy(self.champions[dataset])


class FakeLedger:
    """BudgetLedger's contract in memory (tests/adapters checks the real one against moto)."""

    def __init__(self) -> None:
        self.months: dict[str, dict[str, float]] = {}
        self.items: dict[tuple[str, int], Reservation] = {}
        self._lock = threading.Lock()

    def totals(self, month):
        m = self.months.get(month, {})
        return MonthTotals(month=month, spent_usd=m.get("spent", 0.0), reserved_usd=m.get("reserved", 0.0))

    def reserve(self, res, budget_usd, extra_spent_usd=0.0, now=None):
        with self._lock:
            if (res.run_id, res.attempt) in self.items:
                return True, self.items[(res.run_id, res.attempt)].model_copy()
            m = self.months.setdefault(res.month, {"spent": 0.0, "reserved": 0.0})
            if m["spent"] + m["reserved"] + res.amount_usd + extra_spent_usd > budget_usd + 1e-9:
                return False, res
            m["reserved"] += res.amount_usd
            self.items[(res.run_id, res.attempt)] = res.model_copy(update={"state": "reserved"})
            return True, res

    def reservations(self, run_id):
        return sorted((r.model_copy() for (rid, _), r in self.items.items() if rid == run_id), key=lambda r: r.attempt)

    def reservation(self, run_id, attempt):
        r = self.items.get((run_id, attempt))
        return r.model_copy() if r else None

    def settle(self, run_id, attempt, billable_seconds, training_seconds=None, now=None):
        with self._lock:
            r = self.items.get((run_id, attempt))
            if r is None or r.state != "reserved":
                return None
            actual = min(r.hourly_usd * r.instance_count * billable_seconds / 3600.0, r.amount_usd)
            m = self.months[r.month]
            m["reserved"] -= r.amount_usd
            m["spent"] += actual
            done = r.model_copy(update={"state": "settled", "actual_usd": actual, "billable_seconds": billable_seconds,
                                        "training_seconds": training_seconds})
            self.items[(run_id, attempt)] = done
            return done.model_copy()


class FakeSNS:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs):
        self.published.append(kwargs)
        return {"MessageId": f"m-{len(self.published)}"}

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(p["Message"]) for p in self.published]


class FakeBody(io.BytesIO):
    """Non-seekable like botocore's StreamingBody: only read()."""

    def seekable(self) -> bool:
        return False


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.calls: list[str] = []

    def get_object(self, Bucket, Key):
        self.calls.append(f"get {Key}")
        return {"Body": FakeBody(self.objects[(Bucket, Key)])}

    def put_object(self, Bucket, Key, Body, **_):
        self.calls.append(f"put {Key}")
        self.objects[(Bucket, Key)] = Body if isinstance(Body, bytes) else Body.read()

    def upload_fileobj(self, fileobj, bucket, key):
        self.calls.append(f"put {key}")
        self.objects[(bucket, key)] = fileobj.read()

    def copy_object(self, Bucket, Key, CopySource):
        self.calls.append(f"copy {CopySource['Key']} -> {Key}")
        self.objects[(Bucket, Key)] = self.objects[(CopySource["Bucket"], CopySource["Key"])]

    def head_object(self, Bucket, Key):
        if (Bucket, Key) not in self.objects:
            raise KeyError(Key)
        return {}


class FakeReport:
    def __init__(self, valid: bool, errors: list[str] | None = None) -> None:
        self.valid = valid
        self.errors = errors or []

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"valid": self.valid, "errors": self.errors}


class FakeValidator:
    def __init__(self, valid: bool = True, errors: list[str] | None = None) -> None:
        self.report = FakeReport(valid, errors)
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, bucket, dataset, s3):
        self.calls.append((bucket, dataset))
        return self.report


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def sns() -> FakeSNS:
    return FakeSNS()


@pytest.fixture
def s3() -> FakeS3:
    return FakeS3()


@pytest.fixture
def settings_factory():
    return make_settings


@pytest.fixture
def validator_factory():
    return FakeValidator
