"""Run records and champions in DynamoDB (layout: docs/architecture.md, "DynamoDB").

Numbers are Decimals in DynamoDB; this module converts to/from float/int at its boundary so callers
only see plain Python values. The champion record changes by a conditional write only (or by the
deliberate manual overrides at the bottom, which the CLI uses and which are recorded in history).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from yoloops_core.aws import client
from yoloops_core.models import RunContext, RunStatus, iso, utcnow

logger = Logger(child=True)

RUN_SK = "RUN"
CHAMPION_SK = "CHAMPION"
HISTORY_PREFIX = "HISTORY#"
IN_FLIGHT = tuple(s.value for s in RunStatus if s.in_flight)


class StoreError(RuntimeError):
    """A store operation that cannot proceed (e.g. nothing to roll back to)."""


def run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def dataset_pk(dataset: str) -> str:
    return f"DATASET#{dataset}"


def price_pk(region: str) -> str:
    return f"PRICE#{region}"


# ---------------------------------------------------------------- Decimal conversion

def to_dynamo(value: Any) -> Any:
    """Python value -> a value boto3's serializer accepts (floats become Decimals; None kept)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {str(k): to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    if isinstance(value, set):
        return {to_dynamo(v) for v in value}
    return value


def from_dynamo(value: Any) -> Any:
    """Deserialized DynamoDB value -> plain Python (Decimal -> int when integral, else float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, set):
        return sorted(from_dynamo(v) for v in value)
    return value


def _serializers():
    # boto3's (de)serializers; imported lazily to keep handler imports cheap.
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    return TypeSerializer(), TypeDeserializer()


def _ser(item: dict[str, Any]) -> dict[str, Any]:
    ser, _ = _serializers()
    return {k: ser.serialize(v) for k, v in to_dynamo(item).items()}


def _ser_value(value: Any) -> Any:
    ser, _ = _serializers()
    return ser.serialize(to_dynamo(value))


def _de(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if not item:
        return None
    _, de = _serializers()
    return from_dynamo({k: de.deserialize(v) for k, v in item.items()})


def _is_conditional_failure(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code == "ConditionalCheckFailedException"


# put_champion_if_better without an identity condition (manual tools, older callers).
ANY_CHAMPION: Any = object()


def month_of(ts: str) -> str:
    return ts[:7]


def previous_month(month: str) -> str:
    year, mon = (int(p) for p in month.split("-"))
    return f"{year - 1}-12" if mon == 1 else f"{year}-{mon - 1:02d}"


class DynamoTable:
    """One DynamoDB table through a low-level client (`ddb`), made lazily so imports stay cheap."""

    def __init__(self, table: str, ddb: Any = None) -> None:
        self.table = table
        self._ddb = ddb

    @property
    def ddb(self) -> Any:
        if self._ddb is None:
            self._ddb = client("dynamodb")
        return self._ddb


class RunStore(DynamoTable):
    """DynamoDB adapter for run records and champions."""

    # ------------------------------------------------------------ runs

    def create_run(self, ctx: RunContext, status: RunStatus = RunStatus.STARTED,
                   now: datetime | None = None) -> bool:
        """Create the run record; False when it already exists (a re-invoked first step)."""
        at = iso(now or utcnow())
        item = {
            "pk": run_pk(ctx.run_id), "sk": RUN_SK,
            "run_id": ctx.run_id, "status": status.value,
            "dataset": ctx.dataset.name, "dataset_version": ctx.dataset.version,
            "trigger_source": ctx.trigger.source, "trigger_ref": ctx.trigger.ref,
            "execution_arn": ctx.execution_arn, "image_uri": ctx.image_uri,
            "month": month_of(ctx.started_at), "started_at": ctx.started_at, "updated_at": at,
            "attempts": 0, "job_names": [], "interruptions": 0, "interruptions_by_attempt": {},
            "history": [{"at": at, "status": status.value, "note": "run created"}],
        }
        return self._put_new(item, ctx.run_id)

    def create_minimal_run(self, run_id: str, status: RunStatus, note: str,
                           now: datetime | None = None, **fields: Any) -> bool:
        """A record for a run whose first step never got far (e.g. malformed execution input)."""
        at = iso(now or utcnow())
        item = {
            "pk": run_pk(run_id), "sk": RUN_SK, "run_id": run_id, "status": status.value,
            "month": month_of(at), "started_at": at, "updated_at": at, "attempts": 0, "job_names": [],
            "interruptions": 0, "history": [{"at": at, "status": status.value, "note": note}],
            **fields,
        }
        return self._put_new(item, run_id)

    def _put_new(self, item: dict[str, Any], run_id: str) -> bool:
        try:
            self.ddb.put_item(TableName=self.table, Item=_ser(item),
                              ConditionExpression="attribute_not_exists(pk)")
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise
            logger.info("run record already exists", extra={"run_id": run_id})
            return False
        return True

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        resp = self.ddb.get_item(TableName=self.table, Key=_ser({"pk": run_pk(run_id), "sk": RUN_SK}),
                                 ConsistentRead=True)
        return _de(resp.get("Item"))

    def update_run(self, run_id: str, *, status: RunStatus | None = None, note: str | None = None,
                   now: datetime | None = None, add: dict[str, float] | None = None,
                   map_entries: dict[str, dict[str, Any]] | None = None, **fields: Any) -> None:
        """SET `fields` (None values are skipped), ADD `add`, set keys inside map attributes, and
        append a history entry when `status` or `note` is given. The record must exist."""
        at = iso(now or utcnow())
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        fields = {k: v for k, v in fields.items() if v is not None}
        fields["updated_at"] = at
        if status is not None:
            fields["status"] = status.value
        for i, (key, value) in enumerate(fields.items()):
            names[f"#f{i}"] = key
            values[f":f{i}"] = value
            sets.append(f"#f{i} = :f{i}")
        for i, attr in enumerate(map_entries or {}):
            names[f"#m{i}"] = attr
            values[":emptymap"] = {}
            sets.append(f"#m{i} = if_not_exists(#m{i}, :emptymap)")
            # A map and one of its keys cannot be set in the same expression: keys go in a 2nd update.
        if status is not None or note:
            values[":hist"] = [{"at": at, "status": status.value if status else None, "note": note or ""}]
            values[":emptylist"] = []
            sets.append("history = list_append(if_not_exists(history, :emptylist), :hist)")
        expr = "SET " + ", ".join(sets)
        adds = []
        for i, (key, amount) in enumerate((add or {}).items()):
            names[f"#a{i}"] = key
            values[f":a{i}"] = amount
            adds.append(f"#a{i} :a{i}")
        if adds:
            expr += " ADD " + ", ".join(adds)
        self.ddb.update_item(
            TableName=self.table, Key=_ser({"pk": run_pk(run_id), "sk": RUN_SK}),
            UpdateExpression=expr, ExpressionAttributeNames=names,
            ExpressionAttributeValues={k: _ser_value(v) for k, v in values.items()},
            ConditionExpression="attribute_exists(pk)",
        )
        if map_entries:
            self._set_map_entries(run_id, map_entries)

    def finish_if_in_flight(self, run_id: str, status: RunStatus, note: str, now: datetime | None = None,
                            **fields: Any) -> bool:
        """Give an in-flight run its final status; False when it had one already (someone else closed it)."""
        at = iso(now or utcnow())
        values: dict[str, Any] = {":st": status.value, ":at": at, ":hist": [{"at": at, "status": status.value,
                                                                             "note": note}], ":empty": []}
        names = {"#st": "status"}
        sets = ["#st = :st", "updated_at = :at", "finished_at = :at",
                "history = list_append(if_not_exists(history, :empty), :hist)"]
        for i, (key, value) in enumerate((k, v) for k, v in fields.items() if v is not None):
            names[f"#f{i}"] = key
            values[f":f{i}"] = value
            sets.append(f"#f{i} = :f{i}")
        flight = {f":fl{i}": s for i, s in enumerate(IN_FLIGHT)}
        values.update(flight)
        try:
            self.ddb.update_item(
                TableName=self.table, Key=_ser({"pk": run_pk(run_id), "sk": RUN_SK}),
                UpdateExpression="SET " + ", ".join(sets), ExpressionAttributeNames=names,
                ExpressionAttributeValues={k: _ser_value(v) for k, v in values.items()},
                ConditionExpression=f"attribute_exists(pk) AND #st IN ({', '.join(flight)})",
            )
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise
            return False
        return True

    def _set_map_entries(self, run_id: str, map_entries: dict[str, dict[str, Any]]) -> None:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets = []
        for i, (attr, entries) in enumerate(map_entries.items()):
            names[f"#m{i}"] = attr
            for j, (key, value) in enumerate(entries.items()):
                names[f"#k{i}_{j}"] = str(key)
                values[f":v{i}_{j}"] = value
                sets.append(f"#m{i}.#k{i}_{j} = :v{i}_{j}")
        self.ddb.update_item(
            TableName=self.table, Key=_ser({"pk": run_pk(run_id), "sk": RUN_SK}),
            UpdateExpression="SET " + ", ".join(sets), ExpressionAttributeNames=names,
            ExpressionAttributeValues={k: _ser_value(v) for k, v in values.items()},
        )

    def record_job(self, run_id: str, attempt: int, job: str, now: datetime | None = None,
                   status: RunStatus | None = None, note: str | None = None, **fields: Any) -> None:
        """Attempt `attempt` runs as training job `job` (job names are appended once)."""
        record = self.get_run(run_id) or {}
        job_names = list(record.get("job_names") or [])
        if job not in job_names:
            job_names.append(job)
        self.update_run(run_id, status=status, note=note, now=now, attempts=attempt,
                        job_names=job_names, current_job=job, **fields)

    def record_attempt_billing(self, run_id: str, attempt: int, billable_seconds: float,
                               training_seconds: float | None = None) -> None:
        """Billable (and training) seconds of one attempt (idempotent: keyed by attempt); totals recomputed."""
        entries = {"billable_by_attempt": {str(attempt): billable_seconds}}
        if training_seconds is not None:
            entries["training_by_attempt"] = {str(attempt): training_seconds}
        self.update_run(run_id, map_entries=entries)
        record = self.get_run(run_id) or {}
        total = sum(float(v) for v in (record.get("billable_by_attempt") or {}).values())
        self.update_run(run_id, billable_seconds=total)

    def list_runs_by_month(self, month: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": "by_month",
            "KeyConditionExpression": "#m = :m",
            "ExpressionAttributeNames": {"#m": "month"},
            "ExpressionAttributeValues": {":m": {"S": month}},
        }
        while True:
            resp = self.ddb.query(**kwargs)
            items.extend(_de(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def list_in_flight(self, month: str) -> list[dict[str, Any]]:
        """Runs still in flight started this month or last (a run can straddle a month boundary)."""
        runs = self.list_runs_by_month(previous_month(month)) + self.list_runs_by_month(month)
        return [r for r in runs if r.get("status") in IN_FLIGHT]

    # ------------------------------------------------------------ champions

    def get_champion(self, dataset: str) -> dict[str, Any] | None:
        resp = self.ddb.get_item(TableName=self.table,
                                 Key=_ser({"pk": dataset_pk(dataset), "sk": CHAMPION_SK}),
                                 ConsistentRead=True)
        return _de(resp.get("Item"))

    def put_champion_if_better(self, dataset: str, run_id: str, metric: str, value: float,
                               metrics: dict[str, float], model_key: str, now: datetime | None = None,
                               min_improvement: float = 0.0, compared_with: Any = ANY_CHAMPION,
                               paired: bool = False, **fields: Any) -> bool:
        """Make `run_id` the champion unless the stored one is at least as good.

        One conditional write decides, evaluated by DynamoDB: of runs finishing in any order the best
        ends as champion. The condition compares the same metric (the champion's `metric_value` when it
        was measured on `metric`, else its `metrics.<metric>`; a champion without that metric is never
        replaced silently) and demands `min_improvement`. `previous_run_id` is copied from the replaced
        item's `run_id` inside the same write. A re-invoked promote of the champion itself returns True.
        `fields` (e.g. model_package_arn) are stored on the champion item too.

        `compared_with`: the champion the verdict was reached against (None: there was none). The write
        then also requires the champion to still be that one; another run promoted meanwhile wins. With
        `paired` the verdict compared both models on the same images, so the recorded numbers (measured on
        different val splits) are not compared again: the identity is the whole condition.
        """
        at = iso(now or utcnow())
        paired = paired and compared_with is not ANY_CHAMPION  # without an identity, numbers must decide
        key = {"pk": dataset_pk(dataset), "sk": CHAMPION_SK}
        new = {"run_id": run_id, "metric": metric, "metric_value": value, "metrics": metrics,
               "model_key": model_key, "promoted_at": at, **{k: v for k, v in fields.items() if v is not None}}
        limit = value - min_improvement
        for _ in range(5):  # a concurrent first write or update makes us re-read, at most a few times
            current = self.get_champion(dataset)
            if current and current.get("run_id") == run_id:
                return True
            if compared_with is not ANY_CHAMPION and (current or {}).get("run_id") != compared_with:
                logger.info("champion changed since the run started", extra={
                    "dataset": dataset, "run_id": run_id, "compared_with": compared_with,
                    "champion": (current or {}).get("run_id")})
                return False
            if current is None:
                try:
                    self.ddb.put_item(TableName=self.table, Item=_ser({**key, **new}),
                                      ConditionExpression="attribute_not_exists(pk)")
                except Exception as exc:
                    if not _is_conditional_failure(exc):
                        raise
                    continue
                previous = None
            else:
                names = {"#r": "run_id", "#p": "previous_run_id"}
                values = {":run": _ser_value(run_id)}
                if not paired:  # the recorded numbers are compared
                    names.update({"#m": "metric", "#v": "metric_value", "#ms": "metrics", "#pm": metric})
                    values.update({":metric": _ser_value(metric), ":new": _ser_value(value),
                                   ":limit": _ser_value(limit)})
                sets = ["#p = #r"]
                for i, (k, v) in enumerate(new.items()):
                    names[f"#n{i}"] = k
                    values[f":n{i}"] = _ser_value(v)
                    sets.append(f"#n{i} = :n{i}")
                clauses = ["attribute_exists(pk)", "#r <> :run"]
                if compared_with is not ANY_CHAMPION:
                    values[":expected"] = _ser_value(compared_with)
                    clauses.append("#r = :expected")
                if not paired:
                    clauses.append("((#m = :metric AND #v < :new AND #v <= :limit) OR "
                                   "(#m <> :metric AND #ms.#pm < :new AND #ms.#pm <= :limit))")
                condition = " AND ".join(clauses)
                try:
                    old = self.ddb.update_item(
                        TableName=self.table, Key=_ser(key), UpdateExpression="SET " + ", ".join(sets),
                        ConditionExpression=condition,
                        ExpressionAttributeNames=names, ExpressionAttributeValues=values, ReturnValues="ALL_OLD",
                    )
                except Exception as exc:
                    if not _is_conditional_failure(exc):
                        raise
                    after = self.get_champion(dataset) or {}
                    if after.get("run_id") == run_id:  # our own duplicate invocation won meanwhile
                        return True
                    if after and after.get("run_id") == current.get("run_id"):
                        logger.info("champion write lost", extra={"dataset": dataset, "run_id": run_id})
                        return False
                    continue  # the champion changed under us: decide against the new one
                previous = (_de(old.get("Attributes")) or {}).get("run_id")
            self.add_champion_history(dataset, "promote", run_id, at, metric=metric, metric_value=value,
                                      previous_run_id=previous, model_key=model_key)
            return True
        logger.warning("champion write gave up after repeated concurrent changes",
                       extra={"dataset": dataset, "run_id": run_id})
        return False

    def set_champion_fields(self, dataset: str, run_id: str, **fields: Any) -> bool:
        """SET fields on the champion item iff `run_id` is still the champion (e.g. its model package)."""
        names = {"#r": "run_id"}
        values = {":run": _ser_value(run_id)}
        sets = []
        for i, (k, v) in enumerate(fields.items()):
            names[f"#n{i}"] = k
            values[f":n{i}"] = _ser_value(v)
            sets.append(f"#n{i} = :n{i}")
        try:
            self.ddb.update_item(TableName=self.table, Key=_ser({"pk": dataset_pk(dataset), "sk": CHAMPION_SK}),
                                 UpdateExpression="SET " + ", ".join(sets), ConditionExpression="#r = :run",
                                 ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise
            return False
        return True

    def add_champion_history(self, dataset: str, action: str, run_id: str, at: str | None = None,
                             **fields: Any) -> None:
        at = at or iso(utcnow())
        # Sort key at microsecond resolution: a promote and a rollback in the same second keep their order.
        written = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        item = {"pk": dataset_pk(dataset), "sk": f"{HISTORY_PREFIX}{written}#{run_id}", "action": action,
                "run_id": run_id, "at": at, **fields}
        self.ddb.put_item(TableName=self.table, Item=_ser(item))

    def champion_history(self, dataset: str) -> list[dict[str, Any]]:
        """History entries, newest first."""
        resp = self.ddb.query(
            TableName=self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :h)",
            ExpressionAttributeValues={":pk": {"S": dataset_pk(dataset)}, ":h": {"S": HISTORY_PREFIX}},
            ScanIndexForward=False,
        )
        return [_de(i) for i in resp.get("Items", [])]

    def set_champion_manually(self, dataset: str, run_id: str, metric: str, value: float | None,
                              metrics: dict[str, float], model_key: str, actor: str = "cli",
                              now: datetime | None = None) -> dict[str, Any]:
        """Deliberate override (CLI `promote RUN`): unconditional, recorded as manual_promote."""
        at = iso(now or utcnow())
        current = self.get_champion(dataset)
        previous = (current or {}).get("run_id")
        item = {"pk": dataset_pk(dataset), "sk": CHAMPION_SK, "run_id": run_id, "metric": metric,
                "metric_value": value, "metrics": metrics, "model_key": model_key, "promoted_at": at,
                "previous_run_id": previous if previous != run_id else (current or {}).get("previous_run_id")}
        self.ddb.put_item(TableName=self.table, Item=_ser(item))
        self.add_champion_history(dataset, "manual_promote", run_id, at, actor=actor, metric=metric,
                                  metric_value=value, previous_run_id=item["previous_run_id"],
                                  model_key=model_key)
        return from_dynamo(item)

    def rollback_champion(self, dataset: str, actor: str = "cli",
                          now: datetime | None = None) -> dict[str, Any]:
        """Deliberate override (CLI `rollback DATASET`): the previous champion comes back.

        The restored champion's own predecessor is taken from the history entry that last made it
        champion, so repeated rollbacks walk back through the promotions.
        """
        current = self.get_champion(dataset)
        if not current or not current.get("previous_run_id"):
            raise StoreError(f"dataset {dataset!r} has no previous champion to roll back to")
        target = current["previous_run_id"]
        history = self.champion_history(dataset)
        made = next((h for h in history if h.get("run_id") == target
                     and h.get("action") in ("promote", "manual_promote", "rollback")), None)
        if made is None:
            raise StoreError(f"no history entry for previous champion {target!r} of {dataset!r}")
        at = iso(now or utcnow())
        item = {"pk": dataset_pk(dataset), "sk": CHAMPION_SK, "run_id": target,
                "metric": made.get("metric", current.get("metric")), "metric_value": made.get("metric_value"),
                "metrics": (self.get_run(target) or {}).get("metrics") or {},
                "model_key": made.get("model_key") or f"models/{dataset}/versions/{target}/best.pt",
                "promoted_at": at, "previous_run_id": made.get("previous_run_id")}
        self.ddb.put_item(TableName=self.table, Item=_ser(item))
        self.add_champion_history(dataset, "rollback", target, at, actor=actor, metric=item["metric"],
                                  metric_value=item["metric_value"], model_key=item["model_key"],
                                  previous_run_id=item["previous_run_id"], replaced_run_id=current["run_id"])
        return from_dynamo({k: v for k, v in item.items() if v is not None})

    # ------------------------------------------------------------ price cache (yoloops_core.prices)

    def get_price(self, region: str, instance_type: str) -> dict[str, Any] | None:
        """The cached Price List API price of `instance_type` in `region` (pk=PRICE#<region>)."""
        resp = self.ddb.get_item(TableName=self.table, Key=_ser({"pk": price_pk(region), "sk": instance_type}))
        return _de(resp.get("Item"))

    def put_price(self, region: str, instance_type: str, **fields: Any) -> None:
        """Replace the cached price item (hourly_usd, source, as_of, fetched_at, sku, usage_type)."""
        item = {"pk": price_pk(region), "sk": instance_type, "region": region, "instance_type": instance_type,
                **{k: v for k, v in fields.items() if v is not None}}
        self.ddb.put_item(TableName=self.table, Item=_ser(item))

    def list_prices(self, region: str) -> list[dict[str, Any]]:
        resp = self.ddb.query(TableName=self.table, KeyConditionExpression="pk = :pk",
                              ExpressionAttributeValues={":pk": {"S": price_pk(region)}})
        return [_de(i) for i in resp.get("Items", [])]

    # ------------------------------------------------------------ Slack thread of a run

    def claim_slack_thread(self, run_id: str, channel: str, ts: str) -> bool:
        """Store the run's Slack parent message; False when one is stored already or the run has no record."""
        try:
            self.ddb.update_item(
                TableName=self.table, Key=_ser({"pk": run_pk(run_id), "sk": RUN_SK}),
                UpdateExpression="SET slack_ts = :ts, slack_channel = :ch",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(slack_ts)",
                ExpressionAttributeValues={":ts": {"S": ts}, ":ch": {"S": channel}},
            )
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise
            return False
        return True
