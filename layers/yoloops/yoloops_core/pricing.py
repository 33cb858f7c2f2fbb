"""On-demand hourly prices of SageMaker training instances, us-east-1, in USD.

Source: the "Amazon SageMaker AI pricing" page (https://aws.amazon.com/sagemaker/pricing/), On-Demand,
"Training" tab, region US East (N. Virginia). Taken 2026-11-28 from the author's knowledge of that
page, NOT fetched live (no internet where this was written): treat them as estimates and check them
against the page before relying on the budget gate; AWS changes prices (e.g. the 2025 P4/P5 cuts).
Set the `HourlyPriceOverrideUsd` template parameter (env HOURLY_PRICE_OVERRIDE_USD) to use your own
figure for the configured instance type.

The budget gate prices the worst case at the on-demand rate even for spot training: SageMaker bills
managed spot as BillableTimeInSeconds x the on-demand rate, so that is a safe upper bound.
"""

from __future__ import annotations

PRICES_SOURCE = "https://aws.amazon.com/sagemaker/pricing/ (On-Demand, Training, us-east-1)"
PRICES_TAKEN = "2026-11-28"

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
    # NVIDIA V100 / A100 / H100.
    "ml.p3.2xlarge": 3.825, "ml.p3.8xlarge": 14.688, "ml.p3.16xlarge": 28.152,
    "ml.p4d.24xlarge": 37.688,
    "ml.p5.48xlarge": 113.07,
}


class UnknownInstanceType(ValueError):
    """No price is known for an instance type (and no override is configured)."""


def hourly_price(instance_type: str, override_usd: float | None = None) -> float:
    """USD per instance-hour; `override_usd` (the template parameter) wins when set."""
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
