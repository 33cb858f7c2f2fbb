"""`yoloops budget` shows the price the budget gate uses: the figure, where it came from, how old it is."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from yoloops_core.models import iso


def _set_parameters(stack, **params):
    path = stack.workdir / "stack.json"
    data = json.loads(path.read_text())
    data["parameters"].update(params)
    data["outputs"].update(stack.outputs)
    path.write_text(json.dumps(data))


def test_budget_shows_the_shipped_table_price_and_its_date(stack):
    data = json.loads(stack.cli("budget", "--json").stdout)
    price = data["price"]
    assert (price["hourly_usd"], price["source"], price["as_of"]) == (1.408, "shipped-table", "2026-11-28")
    assert (price["instance_type"], price["region"]) == ("ml.g5.xlarge", "us-east-1") and price["age_days"] >= 0
    text = stack.cli("budget").stdout
    assert "price: $1.41/h for ml.g5.xlarge in us-east-1 from the shipped table of 2026-11-28" in text


def test_budget_shows_the_cached_price_list_api_price_and_how_old_it_is(stack):
    stack.store.put_price("us-east-1", "ml.g5.xlarge", hourly_usd=1.5, source="price-list-api", as_of="2026-11-01",
                          fetched_at=iso(datetime.now(UTC)), sku="AAA", usage_type="USE1-Train:ml.g5.xlarge")
    price = json.loads(stack.cli("budget", "--json").stdout)["price"]
    assert (price["hourly_usd"], price["source"], price["age_days"], price["stale"]) == (1.5, "price-list-api", 0, False)
    text = stack.cli("budget").stdout
    assert "$1.50/h for ml.g5.xlarge in us-east-1 from the AWS Price List API, effective 2026-11-01, " \
           "fetched 0 d ago" in text and "stale" not in text
    stack.store.put_price("us-east-1", "ml.g5.xlarge", hourly_usd=1.5, source="price-list-api", as_of="2026-11-01",
                          fetched_at="2026-01-01T00:00:00Z")
    assert "stale: is RefreshPrices failing?" in stack.cli("budget").stdout


def test_budget_shows_the_override_and_an_unknown_price_with_its_fix(stack):
    _set_parameters(stack, HourlyPriceOverrideUsd="0.25")
    assert json.loads(stack.cli("budget", "--json").stdout)["price"]["source"] == "override"
    assert "$0.25/h for ml.g5.xlarge in us-east-1: override (template parameter HourlyPriceOverrideUsd)" in \
        stack.cli("budget").stdout
    _set_parameters(stack, HourlyPriceOverrideUsd="", InstanceType="ml.trn1.32xlarge")
    price = json.loads(stack.cli("budget", "--json").stdout)["price"]
    assert "HourlyPriceOverrideUsd" in price["error"] and "ml.trn1.32xlarge" in price["error"]
    text = stack.cli("budget")
    assert text.exit_code == 0 and "price: no hourly price for SageMaker training on ml.trn1.32xlarge" in text.stdout
