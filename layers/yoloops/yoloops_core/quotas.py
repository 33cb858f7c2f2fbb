"""SageMaker training quotas: their names, where to raise them, and what a ResourceLimitExceeded means.

A new account has 0 GPU instances for training jobs, spot and on-demand alike; the first run then fails
at CreateTrainingJob with "The account-level service limit 'ml.g5.xlarge for spot training job usage' is
0 Instances, ...". `explain_limit` turns that message into the quota's name, its value and the Service
Quotas console page to raise it; `yoloops doctor` reads the same quotas before the first run.
"""

from __future__ import annotations

import re
from typing import Any

SERVICE_CODE = "sagemaker"
_LIMIT = re.compile(r"service limit '(?P<name>[^']+)' is (?P<value>\d+(?:\.\d+)?) ?(?P<unit>[A-Za-z]*)"
                    r"(?:, with current utilization of (?P<used>\d+(?:\.\d+)?))?")


def quota_names(instance_type: str) -> dict[str, str]:
    """Service Quotas names of the training quotas of `instance_type` (capacity kind -> name)."""
    return {"spot": f"{instance_type} for spot training job usage",
            "on-demand": f"{instance_type} for training job usage"}


def console_url(region: str, quota_code: str | None = None) -> str:
    base = f"https://{region}.console.aws.amazon.com/servicequotas/home/services/{SERVICE_CODE}/quotas"
    return f"{base}/{quota_code}" if quota_code else base


def explain_limit(message: str, region: str) -> str | None:
    """"quota '<name>' is <value> <unit>; raise it at <console url> ..." for a ResourceLimitExceeded message,
    or None when the message names no quota (e.g. the concurrent-jobs limit worded otherwise)."""
    found = _LIMIT.search(message or "")
    if not found:
        return None
    name, value, unit = found["name"], found["value"], found["unit"] or "Instances"
    used = f", {found['used']} in use" if found["used"] is not None else ""
    return (f"quota '{name}' is {value} {unit}{used}: raise it in Service Quotas (Amazon SageMaker, search "
            f"'{name}') at {console_url(region)} , or check it first with `yoloops doctor`")


def find_training_quotas(service_quotas: Any, instance_type: str) -> dict[str, dict[str, Any]]:
    """{kind: {name, code, value}} for the spot and on-demand training quotas of `instance_type`
    (applied values; a quota never changed is read from the AWS defaults)."""
    wanted = {name: kind for kind, name in quota_names(instance_type).items()}
    found: dict[str, dict[str, Any]] = {}
    for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
        paginator = service_quotas.get_paginator(operation)
        for page in paginator.paginate(ServiceCode=SERVICE_CODE):
            for quota in page.get("Quotas") or []:
                kind = wanted.get(str(quota.get("QuotaName")))
                if kind and kind not in found:
                    found[kind] = {"name": quota["QuotaName"], "code": quota.get("QuotaCode"),
                                   "value": float(quota.get("Value") or 0.0)}
        if len(found) == len(wanted):
            break
    return found
