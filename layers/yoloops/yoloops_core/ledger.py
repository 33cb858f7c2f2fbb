"""The budget ledger: one item per month in DynamoDB, and one reservation per training attempt.

DynamoDB condition expressions cannot add attributes together, so the month item keeps
`committed` = spent + reserved next to both figures; admission is one transaction that creates
the attempt's reservation (once: the key is run + attempt) and does `ADD committed :cost,
reserved :cost` under `committed <= budget - :cost`. Whatever the concurrency, admitted worst cases
therefore never sum past the budget. Settling an attempt turns its reservation into its actual cost
in the same kind of transaction, guarded by the reservation's state, so it happens once.

Amounts are Decimals with 6 decimal places (micro-dollars) inside; floats at the boundary.
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from yoloops_core.models import iso, utcnow
from yoloops_core.store import DynamoTable, _de, _ser, run_pk

logger = Logger(child=True)

MICRO = Decimal("0.000001")
BUDGET_SK = "BUDGET"
RESERVATION_PREFIX = "RESERVATION#"
RESERVED, SETTLED = "reserved", "settled"
# DynamoDB cancels a transaction that touches an item another transaction holds (TransactionConflict):
# the month item is shared by every admission and settlement, so such a cancel is retried, jittered.
CONFLICT_TRIES = 6
CONFLICT_BACKOFF_S = 0.05


def usd(value: float | Decimal | int, rounding: str = ROUND_HALF_UP) -> Decimal:
    return Decimal(str(value)).quantize(MICRO, rounding=rounding)


def budget_pk(month: str) -> str:
    return f"BUDGET#{month}"


def reservation_sk(attempt: int) -> str:
    return f"{RESERVATION_PREFIX}{attempt:03d}"


class Reservation(BaseModel):
    run_id: str
    attempt: int
    month: str
    amount_usd: float  # the worst case held while the attempt may run
    hourly_usd: float
    price_source: str = ""
    max_runtime_seconds: int
    instance_type: str
    instance_count: int = 1
    use_spot: bool = True
    clamped: bool = False
    state: str = RESERVED
    actual_usd: float | None = None
    billable_seconds: float | None = None
    training_seconds: float | None = None
    reserved_at: str | None = None
    settled_at: str | None = None
    billed_month: str | None = None  # the month its cost counts in (it may differ from `month` at a boundary)


class MonthTotals(BaseModel):
    month: str
    spent_usd: float = 0.0
    reserved_usd: float = 0.0

    @property
    def committed_usd(self) -> float:
        return self.spent_usd + self.reserved_usd


def _n(value: Decimal) -> dict[str, str]:
    return {"N": format(value, "f")}


def _cancellation_codes(exc: Exception) -> list[str] | None:
    response = getattr(exc, "response", None) or {}
    if response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return None
    return [str(r.get("Code") or "None") for r in response.get("CancellationReasons") or []]


def _is_conflict(exc: Exception) -> bool:
    """A transaction cancelled only because another one held an item (never a failed condition)."""
    code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
    if code == "TransactionConflictException":
        return True
    codes = _cancellation_codes(exc)
    return bool(codes) and "TransactionConflict" in codes and "ConditionalCheckFailed" not in codes


def _num(attr: dict[str, Any] | None) -> float:
    return float(attr["N"]) if attr and "N" in attr else 0.0


class BudgetLedger(DynamoTable):
    """Reservations and monthly totals in the runs table."""

    # ------------------------------------------------------------ reads

    def totals(self, month: str) -> MonthTotals:
        item = self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": budget_pk(month)}, "sk": {"S": BUDGET_SK}}).get("Item") or {}
        return MonthTotals(month=month, spent_usd=_num(item.get("spent")), reserved_usd=_num(item.get("reserved")))

    def reservations(self, run_id: str) -> list[Reservation]:
        resp = self.ddb.query(TableName=self.table, ConsistentRead=True,
                              KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
                              ExpressionAttributeValues={":pk": {"S": run_pk(run_id)},
                                                         ":r": {"S": RESERVATION_PREFIX}})
        out = []
        for raw in resp.get("Items", []):
            item = _de(raw) or {}
            out.append(Reservation.model_validate({k: v for k, v in item.items() if k not in ("pk", "sk")}))
        return sorted(out, key=lambda r: r.attempt)

    def reservation(self, run_id: str, attempt: int) -> Reservation | None:
        return next((r for r in self.reservations(run_id) if r.attempt == attempt), None)

    # ------------------------------------------------------------ writes

    def _transact(self, items: list[dict[str, Any]], sleep: Any = time.sleep) -> None:
        """TransactWriteItems, retried (bounded, full jitter) while it only conflicts with another transaction."""
        for attempt in range(CONFLICT_TRIES):
            try:
                self.ddb.transact_write_items(TransactItems=items)
                return
            except Exception as exc:
                if not _is_conflict(exc) or attempt == CONFLICT_TRIES - 1:
                    raise
                logger.info("ledger transaction conflict, retrying", extra={"attempt": attempt + 1})
                sleep(random.uniform(0, CONFLICT_BACKOFF_S * 2 ** attempt))

    def reserve(self, res: Reservation, budget_usd: float, extra_spent_usd: float = 0.0,
                now: datetime | None = None) -> tuple[bool, Reservation]:
        """Hold `res.amount_usd` iff committed + amount + extra <= budget. Idempotent per attempt:
        a reservation that already exists is returned as admitted (a re-invoked step)."""
        amount = usd(round(res.amount_usd, 9), ROUND_CEILING)  # float noise must not round a cent up
        limit = usd(budget_usd) - amount - usd(max(extra_spent_usd, 0.0), ROUND_CEILING)
        if limit < 0:
            existing = self.reservation(res.run_id, res.attempt)
            return (True, existing) if existing else (False, res)
        res = res.model_copy(update={"amount_usd": float(amount), "state": RESERVED,
                                     "reserved_at": iso(now or utcnow())})
        item = {"pk": run_pk(res.run_id), "sk": reservation_sk(res.attempt), **res.model_dump(exclude_none=True)}
        try:
            self._transact([
                {"Put": {"TableName": self.table, "Item": _ser(item),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Update": {"TableName": self.table,
                            "Key": {"pk": {"S": budget_pk(res.month)}, "sk": {"S": BUDGET_SK}},
                            "UpdateExpression": "ADD committed :a, reserved :a",
                            "ConditionExpression": "attribute_not_exists(committed) OR committed <= :limit",
                            "ExpressionAttributeValues": {":a": _n(amount), ":limit": _n(limit)}}},
            ])
        except Exception as exc:
            codes = _cancellation_codes(exc)
            if codes is None:
                raise
            if codes and codes[0] == "ConditionalCheckFailed":
                existing = self.reservation(res.run_id, res.attempt)
                if existing is not None:
                    return True, existing
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return False, res
            raise  # conflicts were retried by _transact: this one is something else
        logger.info("budget reserved", extra={"run_id": res.run_id, "attempt": res.attempt,
                                              "amount_usd": float(amount), "month": res.month})
        return True, res

    def settle(self, run_id: str, attempt: int, billable_seconds: float, training_seconds: float | None = None,
               now: datetime | None = None) -> Reservation | None:
        """Turn the attempt's reservation into its actual cost (billable seconds x the reserved price).

        The cost counts in the month it is billed (the month of `now`, when the attempt is seen ended); the
        hold leaves the month it was reserved in, so a reservation across a month boundary moves over.
        Returns the settled reservation, or None when there is none or it was settled already."""
        res = self.reservation(run_id, attempt)
        if res is None or res.state != RESERVED:
            return None
        hours = Decimal(str(max(billable_seconds, 0.0))) / Decimal(3600)
        # Never more than what was held: SageMaker stops the job at MaxRuntime.
        actual = min(usd(Decimal(str(res.hourly_usd)) * hours * res.instance_count), usd(res.amount_usd))
        amount = usd(res.amount_usd)
        at = iso(now or utcnow())
        billed_month = at[:7]
        values = {":settled": {"S": SETTLED}, ":reserved": {"S": RESERVED}, ":actual": _n(actual),
                  ":billed": _n(usd(billable_seconds)), ":at": {"S": at}, ":bm": {"S": billed_month}}
        sets = ("#s = :settled, actual_usd = :actual, billable_seconds = :billed, settled_at = :at, "
                "billed_month = :bm")
        if training_seconds is not None:
            values[":trained"] = _n(usd(training_seconds))
            sets += ", training_seconds = :trained"

        def month(m: str, expression: str, vals: dict[str, Any]) -> dict[str, Any]:
            return {"Update": {"TableName": self.table, "Key": {"pk": {"S": budget_pk(m)}, "sk": {"S": BUDGET_SK}},
                               "UpdateExpression": expression, "ExpressionAttributeValues": vals}}

        items = [{"Update": {"TableName": self.table,
                             "Key": {"pk": {"S": run_pk(run_id)}, "sk": {"S": reservation_sk(attempt)}},
                             "UpdateExpression": "SET " + sets, "ConditionExpression": "#s = :reserved",
                             "ExpressionAttributeNames": {"#s": "state"}, "ExpressionAttributeValues": values}}]
        if billed_month == res.month:
            items.append(month(res.month, "ADD committed :d, reserved :r, spent :s",
                               {":d": _n(actual - amount), ":r": _n(-amount), ":s": _n(actual)}))
        else:
            items.append(month(res.month, "ADD committed :r, reserved :r", {":r": _n(-amount)}))
            items.append(month(billed_month, "ADD committed :s, spent :s", {":s": _n(actual)}))
        try:
            self._transact(items)
        except Exception as exc:
            codes = _cancellation_codes(exc)
            if codes and codes[0] == "ConditionalCheckFailed":
                return None  # settled by a concurrent closer
            raise
        logger.info("budget settled", extra={"run_id": run_id, "attempt": attempt, "actual_usd": float(actual),
                                             "released_usd": float(amount - actual), "month": res.month,
                                             "billed_month": billed_month})
        return res.model_copy(update={"state": SETTLED, "actual_usd": float(actual),
                                      "billable_seconds": billable_seconds, "training_seconds": training_seconds,
                                      "settled_at": at, "billed_month": billed_month})
