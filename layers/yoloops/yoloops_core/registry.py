"""SageMaker Model Registry: one ModelPackage per evaluated model, in one group per dataset.

Approval mirrors the champion record: exactly one package of a group is `Approved`, the champion's;
every other evaluated model is `Rejected` (a superseded champion too, with the reason in its
ApprovalDescription). A package waits in `PendingManualApproval` only between Evaluate and Promote.
Teams that deploy from the registry ("the Approved package of group G") so get the same model as
`models/<dataset>/champion/`. `sync_approvals` makes the registry match the record whatever happened
before (promote, rollback, manual promote, a failed call), so the watchdog's repair can call it too.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(child=True)

APPROVED, REJECTED, PENDING = "Approved", "Rejected", "PendingManualApproval"
MAX_GROUP_NAME = 63
GROUP_DELIMITER = "--"  # between the stack's NamePrefix and the dataset
# CustomerMetadataProperties: keys <= 128, values 1..256 chars of letters, digits, spaces and _.:/=+-@
_META_BAD = re.compile(r"[^\w\s.:/=+\-@]")


def group_name(prefix: str, dataset: str) -> str:
    """`<prefix>--<dataset>` made SageMaker-safe (<= 63 chars of [a-zA-Z0-9-], alphanumeric first).

    "--" never occurs in a NamePrefix (its AllowedPattern), so the first "--" ends the prefix: stack
    `yolo` (dataset `dev-x`) and stack `yolo-dev` (dataset `x`) never share a group, and each stack's IAM
    pattern `<prefix>--*` matches its own groups only. A name that had to change (other characters, too
    long) gets a hash of the original so two datasets never share a group ("a.b" and "a_b" both become
    "a-b" plus different hashes).
    """
    raw = f"{prefix}{GROUP_DELIMITER}{dataset}" if prefix else dataset
    safe = re.sub(r"[^A-Za-z0-9-]", "-", raw).strip("-") or "yoloops"
    if safe == raw and len(safe) <= MAX_GROUP_NAME:
        return safe
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return safe[: MAX_GROUP_NAME - len(digest) - 1].rstrip("-") + "-" + digest


def metadata(values: dict[str, Any]) -> dict[str, str]:
    """CustomerMetadataProperties: strings in SageMaker's allowed alphabet, empty values dropped."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value == "":
            continue
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        k = _META_BAD.sub("_", str(key))[:128]
        v = _META_BAD.sub("_", text)[:256]
        if k and v and len(out) < 50:
            out[k] = v
    return out


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")


class ModelRegistry:
    """Adapter over a boto3 SageMaker client (`sm`); `prefix` namespaces the groups per stack."""

    def __init__(self, sm: Any, prefix: str = "yoloops") -> None:
        self.sm = sm
        self.prefix = prefix

    def group(self, dataset: str) -> str:
        return group_name(self.prefix, dataset)

    def ensure_group(self, dataset: str) -> str:
        name = self.group(dataset)
        try:
            self.sm.describe_model_package_group(ModelPackageGroupName=name)
            return name
        except Exception as exc:
            if _code(exc) not in ("ValidationException", "ResourceNotFound"):
                raise
        try:
            self.sm.create_model_package_group(
                ModelPackageGroupName=name,
                ModelPackageGroupDescription=f"yoloops models of dataset {dataset}"[:1024])
        except Exception as exc:  # a concurrent first registration created it
            if "already exists" not in str(exc):
                raise
        return name

    def register(self, *, dataset: str, run_id: str, model_data_url: str, image_uri: str,
                 status: str, properties: dict[str, Any], description: str = "",
                 existing_arn: str | None = None) -> str:
        """Create the run's ModelPackage; returns its ARN. Idempotent per run: a retried step passes the
        ARN it recorded (`existing_arn`), and SageMaker dedupes the same ClientToken."""
        if existing_arn:
            self.set_status(existing_arn, status, description)
            return existing_arn
        group = self.ensure_group(dataset)
        resp = self.sm.create_model_package(
            ModelPackageGroupName=group,
            ModelPackageDescription=f"run {run_id}"[:1024],
            ModelApprovalStatus=status,
            CustomerMetadataProperties=metadata({"run_id": run_id, "dataset": dataset, **properties}),
            InferenceSpecification={
                # The training image loads best.pt (Ultralytics); the ready-to-deploy formats (ONNX,
                # OpenVINO, TorchScript) are in the bundle under models/<dataset>/versions/<run id>/.
                "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url}],
                "SupportedContentTypes": ["image/jpeg", "image/png"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            ClientToken=hashlib.sha256(f"{group}/{run_id}".encode()).hexdigest()[:36],
        )
        arn = resp["ModelPackageArn"]
        if description:
            self.set_status(arn, status, description)
        logger.info("model package registered", extra={"run_id": run_id, "arn": arn, "status": status})
        return arn

    def packages(self, dataset: str, status: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"ModelPackageGroupName": self.group(dataset), "MaxResults": 100}
        if status:
            kwargs["ModelApprovalStatus"] = status
        out: list[dict[str, Any]] = []
        while True:
            try:
                resp = self.sm.list_model_packages(**kwargs)
            except Exception as exc:
                if _code(exc) in ("ValidationException", "ResourceNotFound"):
                    return out  # no group yet
                raise
            out.extend(resp.get("ModelPackageSummaryList") or [])
            if not resp.get("NextToken"):
                return out
            kwargs["NextToken"] = resp["NextToken"]

    def describe(self, arn: str) -> dict[str, Any]:
        return self.sm.describe_model_package(ModelPackageName=arn)

    def find(self, dataset: str, run_id: str) -> str | None:
        """The ARN of the run's package (by its run_id metadata), newest first."""
        for summary in sorted(self.packages(dataset), key=lambda p: p.get("ModelPackageVersion") or 0,
                              reverse=True):
            props = self.describe(summary["ModelPackageArn"]).get("CustomerMetadataProperties") or {}
            if props.get("run_id") == run_id:
                return summary["ModelPackageArn"]
        return None

    def set_status(self, arn: str, status: str, description: str = "") -> None:
        kwargs: dict[str, Any] = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
        if description:
            kwargs["ApprovalDescription"] = description[:1024]
        self.sm.update_model_package(**kwargs)

    def sync_approvals(self, dataset: str, champion_run_id: str | None, champion_arn: str | None = None,
                       reason: str = "") -> dict[str, list[str]]:
        """Approve the champion's package and reject every other Approved one; returns what changed."""
        changed: dict[str, list[str]] = {"approved": [], "rejected": []}
        arn = champion_arn or (self.find(dataset, champion_run_id) if champion_run_id else None)
        if arn:
            current = self.describe(arn).get("ModelApprovalStatus")
            if current != APPROVED:
                self.set_status(arn, APPROVED, reason or f"champion of {dataset}")
                changed["approved"].append(arn)
        for summary in self.packages(dataset, APPROVED):
            other = summary["ModelPackageArn"]
            if other != arn:
                self.set_status(other, REJECTED, f"no longer the champion of {dataset}"
                                + (f" ({champion_run_id} is)" if champion_run_id else ""))
                changed["rejected"].append(other)
        return changed


def from_settings(settings: Any) -> ModelRegistry | None:
    """The stack's registry adapter (boto3 SageMaker client via yoloops_core.aws), or None when off."""
    if not settings.model_registry:
        return None
    from yoloops_core.aws import client

    return ModelRegistry(client("sagemaker"), settings.model_package_group_prefix)
