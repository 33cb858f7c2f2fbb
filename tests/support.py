"""Helpers shared by test folders (tests/ is on sys.path through its conftest)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def create_runs_table(ddb, name: str = "runs") -> str:
    """Create the runs table in moto with template.yaml's own key schema and GSI (one source of truth)."""
    from yoloops.local.deploy import load_template

    props = load_template(ROOT / "template.yaml")["Resources"]["RunsTable"]["Properties"]
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=props["AttributeDefinitions"], KeySchema=props["KeySchema"],
                     GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"])
    return name

