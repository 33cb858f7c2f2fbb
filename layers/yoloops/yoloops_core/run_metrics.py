"""CloudWatch metrics of finished runs, as Embedded Metric Format lines in Notify's log (no API call).

Notify is the one place every run ends, so it emits them; the template's dashboard reads them
(namespace METRICS_NAMESPACE, dimension service=yoloops): Runs by Outcome, RunDurationSeconds,
TrainingSeconds, SpotInterruptions, CostUsd.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

METRICS_NAMESPACE = "yoloops"
SERVICE = "yoloops"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def emit_run_metrics(*, outcome: str, duration_s: Any = None, training_s: Any = None, interruptions: Any = None,
                     cost_usd: Any = None, namespace: str = METRICS_NAMESPACE) -> None:
    """Two EMF blobs: the run counted under its outcome, then its figures (those that are known)."""
    by_outcome = EphemeralMetrics(namespace=namespace, service=SERVICE)
    by_outcome.add_dimension(name="Outcome", value=outcome)
    by_outcome.add_metric(name="Runs", unit=MetricUnit.Count, value=1)
    by_outcome.flush_metrics()
    figures = EphemeralMetrics(namespace=namespace, service=SERVICE)
    values = [("RunDurationSeconds", MetricUnit.Seconds, duration_s),
              ("TrainingSeconds", MetricUnit.Seconds, training_s),
              ("SpotInterruptions", MetricUnit.Count, interruptions),
              ("CostUsd", MetricUnit.NoUnit, cost_usd)]
    added = False
    for name, unit, value in values:
        number = _number(value)
        if number is not None:
            figures.add_metric(name=name, unit=unit, value=number)
            added = True
    if added:
        figures.flush_metrics()
