"""Helpers for the S3 trigger tests and benchmark: moto resources shaped like the template's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import support

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
BUCKET = "yoloops-artifacts-123456789012"  # the bucket named in events/s3_*.json
TABLE = "yoloops-runs"
ACCOUNT = "123456789012"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def load_handler() -> Any:
    """functions/s3_trigger/app.py as a module (functions/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fn_s3_trigger", ROOT / "functions" / "s3_trigger" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_asl() -> str:
    """statemachine/training.asl.json with DefinitionSubstitutions filled with plausible ARNs."""
    text = (ROOT / "statemachine" / "training.asl.json").read_text()

    def arn(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.endswith("RoleArn"):
            return f"arn:aws:iam::{ACCOUNT}:role/{name}"
        return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name.removesuffix('Arn')}"

    return re.sub(r"\$\{(\w+)\}", arn, text)


def create_state_machine(sfn: Any) -> str:
    return sfn.create_state_machine(
        name="yoloops-training", definition=real_asl(), roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
    )["stateMachineArn"]


def create_runs_table(ddb: Any, name: str = TABLE) -> str:
    return support.create_runs_table(ddb, name)


def record_event(key: str, *, event_name: str = "ObjectCreated:Put", bucket: str = BUCKET, size: int = 1,
                 event_time: str = "2026-11-28T10:15:30.512Z", sequencer: str = "00A") -> dict[str, Any]:
    """A one-record S3 notification, key already URL-encoded as S3 sends it."""
    event = load_fixture("s3_manifest_put.json")
    rec = event["Records"][0]
    rec["eventName"] = event_name
    rec["eventTime"] = event_time
    rec["s3"]["bucket"]["name"] = bucket
    rec["s3"]["object"].update(key=key, size=size, sequencer=sequencer)
    return event
