"""The hourly price the budget gate uses, and the daily refresh of it from the AWS Price List API.

    price_for(settings, store, now) -> Price(hourly_usd, source, as_of, instance_type, region)

Order: the `HourlyPriceOverrideUsd` template parameter, then the Price List API price cached in the
runs table (`pk=PRICE#<region>`, `sk=<instance type>`, written by the RefreshPrices function), then the
shipped table (`yoloops_core.pricing`). No price at all raises `UnknownPrice`, whose message says how
to fix it. Managed spot has no list price of its own (SageMaker bills spot as billable seconds x the
on-demand rate), so the on-demand Training price is the worst case for spot and on-demand alike.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Literal, Protocol

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict

from yoloops_core.config import Settings
from yoloops_core.models import iso, utcnow
from yoloops_core.pricing import SHIPPED_TABLES, UnknownInstanceType, shipped_price

logger = Logger(child=True)

PriceSource = Literal["override", "price-list-api", "shipped-table"]
SERVICE_CODE = "AmazonSageMaker"
# A cached API price older than this means the daily refresh has been failing: shown as stale.
STALE_AFTER_DAYS = 7


class UnknownPrice(UnknownInstanceType):
    """No override, no cached Price List API price and no shipped-table row for this type and region."""


class PriceRefreshError(RuntimeError):
    """The Price List API gave no usable price for the configured instance type (the function fails: alarm)."""


class PriceReader(Protocol):
    def get_price(self, region: str, instance_type: str) -> dict[str, Any] | None: ...


class PriceCache(PriceReader, Protocol):
    def put_price(self, region: str, instance_type: str, **fields: Any) -> None: ...
    def list_prices(self, region: str) -> list[dict[str, Any]]: ...


class Price(BaseModel):
    model_config = ConfigDict(frozen=True)

    hourly_usd: float
    source: PriceSource
    as_of: str  # ISO date: the offer's effective date, the table's date, or today for an override
    instance_type: str
    region: str
    fetched_at: str | None = None  # price-list-api: when the refresh read it
    detail: str = ""  # where exactly: SKU and usage type, the table's source, the parameter

    def age_days(self, now: datetime | None = None) -> int:
        """Days since the price was last confirmed (fetched, or the table's date)."""
        ref = (self.fetched_at or self.as_of)[:10]
        return max(0, ((now or utcnow()).date() - date.fromisoformat(ref)).days)

    def stale(self, now: datetime | None = None) -> bool:
        return self.source == "price-list-api" and self.age_days(now) > STALE_AFTER_DAYS


def price_for(settings: Settings, store: PriceReader | None, now: datetime | None = None) -> Price:
    """The hourly price of `settings.instance_type` in the stack's region (see the module docstring)."""
    now = now or utcnow()
    region, itype = settings.region, settings.instance_type
    if settings.hourly_price_override_usd is not None:
        return Price(hourly_usd=float(settings.hourly_price_override_usd), source="override",
                     as_of=now.date().isoformat(), instance_type=itype, region=region,
                     detail="template parameter HourlyPriceOverrideUsd")
    cached = store.get_price(region, itype) if store is not None else None
    if cached and isinstance(cached.get("hourly_usd"), int | float) and cached["hourly_usd"] > 0:
        return Price(hourly_usd=float(cached["hourly_usd"]), source="price-list-api",
                     as_of=str(cached.get("as_of") or cached.get("fetched_at") or "")[:10] or now.date().isoformat(),
                     instance_type=itype, region=region, fetched_at=cached.get("fetched_at"),
                     detail=f"AWS Price List API, SKU {cached.get('sku', '?')} ({cached.get('usage_type', '?')})")
    shipped = shipped_price(region, itype)
    if shipped is not None:
        value, table = shipped
        return Price(hourly_usd=value, source="shipped-table", as_of=table.as_of, instance_type=itype,
                     region=region, detail=table.source)
    known = SHIPPED_TABLES.get(region)
    hint = (f"the shipped table for {region} has: {', '.join(sorted(known.prices))}" if known
            else f"the shipped table has no {region} prices (it covers {', '.join(sorted(SHIPPED_TABLES))})")
    raise UnknownPrice(
        f"no hourly price for SageMaker training on {itype} in {region}: the Price List API cache has none "
        f"(the RefreshPrices function fills it daily; invoke it once to fill it now) and {hint}. Fix: set the "
        f"template parameter HourlyPriceOverrideUsd (env HOURLY_PRICE_OVERRIDE_USD) to the on-demand price, "
        f"or pick an instance type with a known price"
    )


# ---------------------------------------------------------------- the Price List API (adapter)

def pricing_endpoint_region(region: str) -> str:
    """The Price List API has endpoints in us-east-1, eu-central-1 and ap-south-1 only (any answers for every
    region); take the nearest."""
    if region.startswith(("eu-", "me-", "af-", "il-")):
        return "eu-central-1"
    if region.startswith("ap-"):
        return "ap-south-1"
    return "us-east-1"


class ListedPrice(BaseModel):
    hourly_usd: float
    sku: str
    usage_type: str
    effective_date: str  # ISO date of the on-demand term
    publication_date: str | None = None


def training_filters(region: str, instance_type: str) -> list[dict[str, str]]:
    return [
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
        {"Type": "TERM_MATCH", "Field": "component", "Value": "Training"},
    ]


def _on_demand_training(item: dict[str, Any]) -> list[ListedPrice]:
    """Hourly USD on-demand prices of one PriceList product that is (on-demand) Training usage."""
    product = item.get("product") or {}
    attrs = product.get("attributes") or {}
    usage = str(attrs.get("usagetype") or "")
    plato = str(attrs.get("platoinstancetype") or "Training")
    # Usage types look like USE1-Train:ml.g5.xlarge; spot and other components are not the list price.
    if "spot" in usage.lower() or plato != "Training" or (usage and "-Train:" not in usage):
        return []
    out = []
    for term in ((item.get("terms") or {}).get("OnDemand") or {}).values():
        for dim in (term.get("priceDimensions") or {}).values():
            if str(dim.get("unit", "")).lower() not in ("hrs", "hr", "hours"):
                continue
            try:
                usd = float((dim.get("pricePerUnit") or {}).get("USD", ""))
            except ValueError:
                continue
            if usd > 0:
                out.append(ListedPrice(hourly_usd=usd, sku=str(product.get("sku") or term.get("sku") or "?"),
                                       usage_type=usage or "?",
                                       effective_date=str(term.get("effectiveDate") or item.get("publicationDate")
                                                          or "")[:10],
                                       publication_date=item.get("publicationDate")))
    return out


def list_training_prices(pricing: Any, region: str, instance_type: str) -> list[ListedPrice]:
    """Every on-demand Training price the Price List filter returns for `instance_type` in `region`."""
    found: list[ListedPrice] = []
    kwargs: dict[str, Any] = {"ServiceCode": SERVICE_CODE, "Filters": training_filters(region, instance_type),
                              "FormatVersion": "aws_v1", "MaxResults": 100}
    while True:
        resp = pricing.get_products(**kwargs)
        for raw in resp.get("PriceList") or []:
            found.extend(_on_demand_training(json.loads(raw) if isinstance(raw, str) else raw))
        if not resp.get("NextToken"):
            return found
        kwargs["NextToken"] = resp["NextToken"]


def lookup_training_price(pricing: Any, region: str, instance_type: str) -> ListedPrice | None:
    """The on-demand Training price of `instance_type` in `region`, or None when the API lists none.

    Several matching products (it happens across generations of a SKU) -> the highest: the gate's figure
    is a worst case. API errors raise."""
    found = list_training_prices(pricing, region, instance_type)
    if not found:
        return None
    if len({p.hourly_usd for p in found}) > 1:
        logger.warning("several list prices, taking the highest",
                       extra={"instance_type": instance_type, "region": region,
                              "prices": sorted({p.hourly_usd for p in found})})
    return max(found, key=lambda p: p.hourly_usd)


class RefreshResult(BaseModel):
    region: str
    refreshed: dict[str, float]
    missing: list[str]  # the API lists no on-demand Training price for these
    errors: dict[str, str]


def refresh_prices(settings: Settings, store: PriceCache, pricing: Any, now: datetime | None = None) -> RefreshResult:
    """Re-read the configured instance type's price (and every type already cached for the region) and cache it.

    Other types' failures are logged; the configured type's failure raises (after the rest is written), so the
    scheduled function errors and its alarm tells the team the gate is running on the fallback."""
    now = now or utcnow()
    region = settings.region
    types = {settings.instance_type} | {str(p["sk"]) for p in store.list_prices(region) if p.get("sk")}
    result = RefreshResult(region=region, refreshed={}, missing=[], errors={})
    for itype in sorted(types):
        try:
            listed = lookup_training_price(pricing, region, itype)
        except Exception as exc:  # botocore errors, throttling, bad JSON: keep going, report below
            result.errors[itype] = f"{type(exc).__name__}: {exc}"
            logger.warning("price lookup failed", extra={"instance_type": itype, "error": str(exc)})
            continue
        if listed is None:
            result.missing.append(itype)
            continue
        store.put_price(region, itype, hourly_usd=listed.hourly_usd, source="price-list-api",
                        as_of=listed.effective_date or now.date().isoformat(), fetched_at=iso(now),
                        sku=listed.sku, usage_type=listed.usage_type, publication_date=listed.publication_date)
        result.refreshed[itype] = listed.hourly_usd
    logger.info("prices refreshed", extra=result.model_dump())
    configured = settings.instance_type
    if configured in result.errors:
        raise PriceRefreshError(f"Price List API lookup of {configured} in {region} failed: "
                                f"{result.errors[configured]}; the budget gate keeps the cached or shipped price")
    if configured in result.missing:
        raise PriceRefreshError(f"the Price List API lists no on-demand SageMaker Training price for {configured} "
                                f"in {region}: is the type offered there? The budget gate keeps the cached or "
                                "shipped price; set HourlyPriceOverrideUsd if neither exists")
    return result
