"""Prices: override > Price List API cache > shipped table, the Price List adapter (botocore Stubber: moto 5.2.5
does not implement pricing.GetProducts) and the cache in the real runs table (moto DynamoDB)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from yoloops_core.config import Settings
from yoloops_core.prices import (
    Price,
    PriceRefreshError,
    UnknownPrice,
    lookup_training_price,
    price_for,
    pricing_endpoint_region,
    refresh_prices,
    training_filters,
)
from yoloops_core.pricing import UnknownInstanceType
from yoloops_core.store import RunStore

from tests.adapters.conftest import TABLE, create_runs_table

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def settings(**kw) -> Settings:
    values = {"artifacts_bucket": "b", "runs_table": TABLE, "notifications_topic_arn": "arn:aws:sns:x:1:t",
              "aws_region": "eu-west-1", "instance_type": "ml.g5.xlarge"}
    values.update(kw)
    return Settings.model_validate(values)


def product(instance: str, region_prefix: str, usd: str, sku: str, *, plato: str = "Training",
            usage: str | None = None, unit: str = "Hrs", effective: str = "2026-11-01T00:00:00Z") -> str:
    """One PriceList entry as GetProducts returns it (a JSON string), shaped like the AmazonSageMaker offer."""
    usage = usage or f"{region_prefix}-Train:{instance}"
    term = f"{sku}.JRTCKXETXF"
    return json.dumps({
        "product": {
            "productFamily": "ML Instance",
            "attributes": {
                "servicecode": "AmazonSageMaker", "location": "EU (Ireland)", "locationType": "AWS Region",
                "regionCode": "eu-west-1", "instanceName": instance, "instanceType": instance,
                "component": "Training", "platoinstancetype": plato, "platoinstancename": instance,
                "usagetype": usage, "operation": "RunInstance", "vCpu": "4", "memory": "16 GiB",
                "physicalGpu": "1", "gpuMemory": "24", "computeType": "Accelerated Computing",
                "servicename": "Amazon SageMaker",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonSageMaker",
        "terms": {"OnDemand": {term: {
            "priceDimensions": {f"{term}.6YS6EN2CT7": {
                "unit": unit, "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                "description": f"${usd} per Hour for {instance} training in EU (Ireland)",
                "rateCode": f"{term}.6YS6EN2CT7", "pricePerUnit": {"USD": usd}}},
            "sku": sku, "effectiveDate": effective, "offerTermCode": "JRTCKXETXF", "termAttributes": {}}}},
        "version": "20261120001122", "publicationDate": "2026-11-20T00:11:22Z",
    })


def stubbed(pages: list[list[str]], region="eu-west-1", instance="ml.g5.xlarge"):
    client = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(client)
    for i, page in enumerate(pages):
        expected = {"ServiceCode": "AmazonSageMaker", "Filters": training_filters(region, instance),
                    "FormatVersion": "aws_v1", "MaxResults": 100}
        if i:
            expected["NextToken"] = f"t{i}"
        resp = {"FormatVersion": "aws_v1", "PriceList": page}
        if i < len(pages) - 1:
            resp["NextToken"] = f"t{i + 1}"
        stub.add_response("get_products", resp, expected)
    stub.activate()
    return client, stub


class DictCache:
    def __init__(self, items=None):
        self.items = dict(items or {})

    def get_price(self, region, itype):
        return self.items.get((region, itype))

    def put_price(self, region, itype, **fields):
        self.items[(region, itype)] = {"sk": itype, **fields}

    def list_prices(self, region):
        return [v for (r, _), v in self.items.items() if r == region]


# ---------------------------------------------------------------- price_for order

def test_override_wins_over_cache_and_table():
    cache = DictCache({("us-east-1", "ml.g5.xlarge"): {"hourly_usd": 9.0, "fetched_at": "2026-11-30T06:00:00Z"}})
    p = price_for(settings(aws_region="us-east-1", hourly_price_override_usd=0.5), cache, NOW)
    assert (p.hourly_usd, p.source, p.as_of) == (0.5, "override", "2026-12-01")
    assert "HourlyPriceOverrideUsd" in p.detail


def test_cached_api_price_wins_over_the_shipped_table():
    cache = DictCache({("us-east-1", "ml.g5.xlarge"): {
        "hourly_usd": 1.5, "as_of": "2026-11-01", "fetched_at": "2026-11-28T06:00:00Z", "sku": "S", "usage_type": "U"}})
    p = price_for(settings(aws_region="us-east-1"), cache, NOW)
    assert (p.hourly_usd, p.source, p.as_of, p.region) == (1.5, "price-list-api", "2026-11-01", "us-east-1")
    assert p.age_days(NOW) == 3 and not p.stale(NOW)
    assert Price(**{**p.model_dump(), "fetched_at": "2026-11-20T00:00:00Z"}).stale(NOW)  # refresh failing 11 days


def test_shipped_table_is_the_fallback_with_its_date():
    p = price_for(settings(aws_region="us-east-1"), DictCache(), NOW)
    assert (p.hourly_usd, p.source, p.as_of) == (1.408, "shipped-table", "2026-11-28")
    assert p.age_days(NOW) == 3 and not p.stale(NOW)  # only API prices go stale


def test_unknown_price_says_how_to_fix_it():
    with pytest.raises(UnknownPrice, match=r"ml\.g5\.xlarge in eu-west-1.*HourlyPriceOverrideUsd") as err:
        price_for(settings(), DictCache(), NOW)
    assert isinstance(err.value, UnknownInstanceType)  # callers catching the old error still do
    with pytest.raises(UnknownPrice, match=r"ml\.x9\.huge in us-east-1.*shipped table for us-east-1 has: .*ml\.g5"):
        price_for(settings(aws_region="us-east-1", instance_type="ml.x9.huge"), None, NOW)


def test_region_falls_back_to_console_region():
    s = Settings.model_validate({"artifacts_bucket": "b", "runs_table": "t", "notifications_topic_arn": "a",
                                 "console_region": "us-east-1"})
    assert price_for(s, None, NOW).region == "us-east-1"


@pytest.mark.parametrize(("region", "endpoint"), [
    ("us-west-2", "us-east-1"), ("eu-west-1", "eu-central-1"), ("ap-northeast-1", "ap-south-1"),
    ("sa-east-1", "us-east-1"), ("me-south-1", "eu-central-1")])
def test_pricing_endpoint_region(region, endpoint):
    assert pricing_endpoint_region(region) == endpoint


# ---------------------------------------------------------------- the Price List adapter

def test_lookup_reads_the_on_demand_training_price_across_pages():
    client, stub = stubbed([[product("ml.g5.xlarge", "EU", "1.5730000000", "AAA")],
                            [product("ml.g5.xlarge", "EU", "1.6010000000", "BBB", effective="2026-10-01T00:00:00Z")]])
    listed = lookup_training_price(client, "eu-west-1", "ml.g5.xlarge")
    stub.assert_no_pending_responses()
    # Two SKUs: the higher is the worst case.
    assert (listed.hourly_usd, listed.sku, listed.usage_type, listed.effective_date) == (
        1.601, "BBB", "EU-Train:ml.g5.xlarge", "2026-10-01")


def test_lookup_ignores_spot_other_components_and_non_hourly_units():
    client, _ = stubbed([[
        product("ml.g5.xlarge", "EU", "0.5", "SPOT", plato="SpotTraining", usage="EU-Train:ml.g5.xlarge-Spot"),
        product("ml.g5.xlarge", "EU", "9.9", "HOST", plato="Hosting", usage="EU-Host:ml.g5.xlarge"),
        product("ml.g5.xlarge", "EU", "0.01", "GBMO", unit="GB-Mo"),
    ]])
    assert lookup_training_price(client, "eu-west-1", "ml.g5.xlarge") is None


def test_refresh_writes_the_cache_and_price_for_uses_it():
    client, _ = stubbed([[product("ml.g5.xlarge", "EU", "1.5730000000", "AAA")]])
    cache = DictCache()
    result = refresh_prices(settings(), cache, client, NOW)
    assert result.refreshed == {"ml.g5.xlarge": 1.573} and not result.errors
    p = price_for(settings(), cache, NOW)
    assert (p.hourly_usd, p.source, p.as_of, p.fetched_at) == (1.573, "price-list-api", "2026-11-01",
                                                               "2026-12-01T06:00:00Z")
    assert "AAA" in p.detail and "EU-Train:ml.g5.xlarge" in p.detail


def test_refresh_of_an_unlisted_configured_type_raises_after_writing_the_others():
    cache = DictCache({("eu-west-1", "ml.m5.large"): {"sk": "ml.m5.large", "hourly_usd": 0.1,
                                                      "fetched_at": "2026-11-01T00:00:00Z"}})
    client = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(client)
    # Sorted order: ml.g5.xlarge (configured, unlisted) then ml.m5.large (already cached, refreshed).
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []})
    stub.add_response("get_products", {"FormatVersion": "aws_v1",
                                       "PriceList": [product("ml.m5.large", "EU", "0.1280000000", "MMM")]})
    stub.activate()
    with pytest.raises(PriceRefreshError, match=r"lists no on-demand SageMaker Training price for ml\.g5\.xlarge"):
        refresh_prices(settings(), cache, client, NOW)
    assert cache.get_price("eu-west-1", "ml.m5.large")["hourly_usd"] == 0.128


def test_refresh_api_error_raises_and_the_gate_keeps_the_fallback():
    client = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error("get_products", "ThrottlingException", "Rate exceeded")
    stub.activate()
    cache = DictCache()
    with pytest.raises(PriceRefreshError, match="ThrottlingException"):
        refresh_prices(settings(aws_region="us-east-1"), cache, client, NOW)
    assert price_for(settings(aws_region="us-east-1"), cache, NOW).source == "shipped-table"


# ---------------------------------------------------------------- the cache in DynamoDB; the function in moto

def test_cache_item_layout_in_the_runs_table():
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_runs_table(ddb)
        store = RunStore(TABLE, ddb)
        client, _ = stubbed([[product("ml.g5.xlarge", "EU", "1.5730000000", "AAA")]])
        refresh_prices(settings(), store, client, NOW)
        item = ddb.get_item(TableName=TABLE, Key={"pk": {"S": "PRICE#eu-west-1"}, "sk": {"S": "ml.g5.xlarge"}})["Item"]
        assert item["hourly_usd"] == {"N": "1.573"} and item["source"] == {"S": "price-list-api"}
        assert item["fetched_at"] == {"S": "2026-12-01T06:00:00Z"} and item["as_of"] == {"S": "2026-11-01"}
        assert "month" not in item  # never in the by_month index of runs
        assert price_for(settings(), store, NOW).hourly_usd == 1.573


def test_refresh_function_in_moto_fails_loudly_and_the_table_stays_the_price(monkeypatch, event):
    """moto 5.2.5 answers GetProducts with 404 "Not yet implemented": what the local stack sees."""
    import importlib.util
    from pathlib import Path

    from tests.adapters.conftest import LambdaContext

    with mock_aws():
        from yoloops_core.aws import client

        create_runs_table(client("dynamodb"))
        for k, v in {"ARTIFACTS_BUCKET": "b", "RUNS_TABLE": TABLE, "NOTIFICATIONS_TOPIC_ARN": "arn:aws:sns:x:1:t",
                     "INSTANCE_TYPE": "ml.g5.xlarge"}.items():
            monkeypatch.setenv(k, v)
        path = Path(__file__).resolve().parents[2] / "functions/refresh_prices/app.py"
        spec = importlib.util.spec_from_file_location("refresh_prices_app", path)
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        with pytest.raises(PriceRefreshError, match=r"ml\.g5\.xlarge in us-east-1 failed"):
            app.lambda_handler(event("eventbridge_refresh_prices_schedule.json"), LambdaContext())
        from yoloops_core.config import get_settings

        assert price_for(get_settings(), RunStore(TABLE), NOW).source == "shipped-table"
