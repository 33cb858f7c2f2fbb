"""Training failures no new attempt can fix: the same image on the same instance type meets the same host.

The container writes these with a stable prefix in /opt/ml/output/failure (training_container/yoloops_train/
host.py GPU_UNAVAILABLE); SageMaker returns that line as FailureReason ("AlgorithmError: GpuUnavailable: ..."
on AWS, the bare line on the local stack). They are never retried and never counted as spot failures, so a
broken image cannot burn every attempt, nor switch a run to on-demand capacity.
"""

from __future__ import annotations

FINAL_PREFIXES = ("GpuUnavailable:",)


def final_failure(*texts: object) -> str | None:
    """The final-failure prefix found in any of `texts` (FailureReason, a Cause message), else None."""
    for text in texts:
        if not isinstance(text, str):
            continue
        for prefix in FINAL_PREFIXES:
            if prefix.lower() in text.lower():
                return prefix.rstrip(":")
    return None
