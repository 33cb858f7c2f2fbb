"""The metric lines the training container prints and the MetricDefinitions that parse them.

One source of truth: the plan builder puts METRIC_DEFINITIONS in every CreateTrainingJob, and a
container test asserts each regex matches a line train.py really prints. SageMaker keeps the last
value of each metric as FinalMetricDataList, so train.py prints a closing line for the best model.

Line format (one per epoch, then one for the final best.pt validation):
    yoloops-metric epoch=12 mAP50=0.81234 mAP50-95=0.61234 precision=0.8 recall=0.7 box_loss=1.234 images_per_s=410.5 gpu_util=93.5
"""

from __future__ import annotations

METRIC_PREFIX = "yoloops-metric"
# gpu_util: mean GPU busy % (NVML) over the epoch's training; left out without NVML or a GPU (CPU jobs).
METRIC_NAMES = ("epoch", "mAP50", "mAP50-95", "precision", "recall", "box_loss", "images_per_s", "gpu_util")

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

METRIC_DEFINITIONS: list[dict[str, str]] = [
    # The leading space keeps "mAP50=" from matching inside "mAP50-95=".
    {"Name": name, "Regex": METRIC_PREFIX + r".* " + name.replace("-", r"\-") + "=" + _NUMBER}
    for name in METRIC_NAMES
]


def format_metric_line(values: dict[str, float | int]) -> str:
    """The stdout line for one epoch; keys must be METRIC_NAMES (missing ones are left out)."""
    unknown = set(values) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"unknown metric names: {sorted(unknown)}")
    parts = [f"{n}={values[n]:.6g}" if isinstance(values[n], float) else f"{n}={values[n]}"
             for n in METRIC_NAMES if n in values]
    return " ".join([METRIC_PREFIX, *parts])


def parse_metric_lines(lines: list[str] | str) -> list[dict[str, float]]:
    """Parse metric lines the way SageMaker's regexes would (used by the local training backend)."""
    import re

    if isinstance(lines, str):
        lines = lines.splitlines()
    compiled = [(d["Name"], re.compile(d["Regex"])) for d in METRIC_DEFINITIONS]
    rows = []
    for line in lines:
        if METRIC_PREFIX not in line:
            continue
        row = {name: float(m.group(1)) for name, rx in compiled if (m := rx.search(line))}
        if row:
            rows.append(row)
    return rows
