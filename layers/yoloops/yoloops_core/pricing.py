"""The shipped price table: on-demand hourly prices of SageMaker training instances, per region, in USD.

This is the FALLBACK. The budget gate takes its price from `yoloops_core.prices.price_for`: the
`HourlyPriceOverrideUsd` template parameter wins, then the AWS Price List API figure that the
RefreshPrices function caches daily for the stack's region, then this table.

Each region's table carries its source and the date it was taken. us-east-1: the "Amazon SageMaker AI
pricing" page (https://aws.amazon.com/sagemaker/pricing/), On-Demand, "Training" tab, taken
2026-11-28 from the author's knowledge of that page, NOT fetched live (no internet where this was
written): estimates. No other region is shipped, because a price copied from another region would be
silently wrong there; other regions are priced by the Price List API cache or the override.

The budget gate prices the worst case at the on-demand rate even for spot training: SageMaker bills
managed spot as BillableTimeInSeconds x the on-demand rate, and managed spot has no list price of its
own, so the on-demand rate is the safe upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# us-east-1 (see the module docstring for where these come from).
HOURLY_PRICE_USD: dict[str, float] = {
    # General purpose / compute (CPU) — handy for smoke runs.
    "ml.m5.large": 0.115, "ml.m5.xlarge": 0.23, "ml.m5.2xlarge": 0.461, "ml.m5.4xlarge": 0.922,
    "ml.m5.12xlarge": 2.765, "ml.m5.24xlarge": 5.53,
    "ml.c5.xlarge": 0.204, "ml.c5.2xlarge": 0.408, "ml.c5.4xlarge": 0.816, "ml.c5.9xlarge": 1.836,
    "ml.c5.18xlarge": 3.672,
    # NVIDIA T4.
    "ml.g4dn.xlarge": 0.736, "ml.g4dn.2xlarge": 0.94, "ml.g4dn.4xlarge": 1.505,
    "ml.g4dn.8xlarge": 2.72, "ml.g4dn.12xlarge": 4.89, "ml.g4dn.16xlarge": 5.44,
    # NVIDIA A10G.
    "ml.g5.xlarge": 1.408, "ml.g5.2xlarge": 1.515, "ml.g5.4xlarge": 2.03, "ml.g5.8xlarge": 3.06,
    "ml.g5.12xlarge": 7.09, "ml.g5.16xlarge": 5.12, "ml.g5.24xlarge": 10.18, "ml.g5.48xlarge": 20.36,
    # NVIDIA L4.
    "ml.g6.xlarge": 1.006, "ml.g6.2xlarge": 1.222, "ml.g6.4xlarge": 1.654, "ml.g6.8xlarge": 2.518,
    "ml.g6.12xlarge": 5.751, "ml.g6.16xlarge": 4.246, "ml.g6.24xlarge": 8.322, "ml.g6.48xlarge": 16.643,
    # NVIDIA A100 / H100. No V100 (ml.p3.*): the image's CUDA 13 torch build has no sm_70 kernels
    # (training_container/gpu_arch.py), so the table prices only types a job can train on.
    "ml.p4d.24xlarge": 37.688,
    "ml.p5.48xlarge": 113.07,
}


@dataclass(frozen=True)
class ShippedTable:
    region: str
    source: str
    as_of: str  # ISO date the figures were taken
    prices: dict[str, float] = field(default_factory=dict)


SHIPPED_TABLES: dict[str, ShippedTable] = {
    "us-east-1": ShippedTable(
        region="us-east-1",
        source="https://aws.amazon.com/sagemaker/pricing/ (On-Demand, Training, us-east-1; from memory, not fetched)",
        as_of="2026-11-28", prices=HOURLY_PRICE_USD),
}
# Kept for callers of the single-region table.
PRICES_SOURCE = SHIPPED_TABLES["us-east-1"].source
PRICES_TAKEN = SHIPPED_TABLES["us-east-1"].as_of


def shipped_price(region: str, instance_type: str) -> tuple[float, ShippedTable] | None:
    """(USD per hour, the table it came from) or None when the table has no such region or type."""
    table = SHIPPED_TABLES.get(region)
    if table is None or instance_type not in table.prices:
        return None
    return table.prices[instance_type], table


class UnknownInstanceType(ValueError):
    """No price is known for an instance type (and no override is configured)."""


def hourly_price(instance_type: str, override_usd: float | None = None) -> float:
    """USD per instance-hour from the us-east-1 table; `override_usd` wins when set.

    Region-blind: new code calls `yoloops_core.prices.price_for`, which knows the region and the cache."""
    if override_usd is not None:
        return float(override_usd)
    try:
        return HOURLY_PRICE_USD[instance_type]
    except KeyError:
        raise UnknownInstanceType(
            f"no on-demand price known for SageMaker instance type {instance_type!r}; "
            f"set HOURLY_PRICE_OVERRIDE_USD (template parameter HourlyPriceOverrideUsd) or use one of: "
            + ", ".join(sorted(HOURLY_PRICE_USD))
        ) from None


def format_usd(amount: float) -> str:
    """Dollars for people: cents, but sub-cent costs (short CPU or local runs) keep their digits."""
    return f"${amount:.4f}" if 0 < abs(amount) < 0.01 else f"${amount:.2f}"
