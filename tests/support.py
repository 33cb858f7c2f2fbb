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



AWS_CLI = ROOT / ".venv-awscli" / "bin" / "aws"


def aws_cli(stack, *args: str, timeout: float = 120) -> str:
    """Run the real `aws` CLI (its own venv, built by `make test`) against a local stack; its stdout."""
    import os
    import subprocess

    import pytest

    if not AWS_CLI.exists():
        pytest.fail(f"the aws CLI is missing at {AWS_CLI}: `make test` installs it (target .venv-awscli)")
    env = {**os.environ, "AWS_ENDPOINT_URL": stack.endpoint_url, "AWS_DEFAULT_REGION": stack.region,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_PAGER": ""}
    return subprocess.run([str(AWS_CLI), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=True).stdout


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned), or fail naming `what`."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
