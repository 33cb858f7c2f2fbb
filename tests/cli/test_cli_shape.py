"""The CLI's shape (issue 19 item 5): `--parameter-overrides` as `sam deploy` takes it, `--json` on every
command that prints a listing, and a package whose modules import only downwards."""

from __future__ import annotations

import ast
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner
from yoloops_core.models import RunStatus

from yoloops.cli import app

PACKAGE = Path(__file__).resolve().parents[2] / "yoloops"
# Commands that print no listing (they start things, or stream a process's output).
NO_LISTING = {"local up", "local interrupt", "demo"}


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf command by its full name (typer vendors click: groups are known by their commands)."""
    found: dict[str, Any] = {}
    for name, cmd in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(cmd, "commands"):
            found.update(_commands(cmd, path + " "))
        else:
            found[path] = cmd
    return found


def test_every_command_that_prints_a_listing_takes_json():
    commands = _commands(typer.main.get_command(app))
    assert {"runs", "run show", "champion", "budget", "dlq list", "logs", "weights push"} <= set(commands)
    missing = [name for name, cmd in commands.items()
               if name not in NO_LISTING and not any("--json" in p.opts for p in cmd.params)]
    assert missing == [], f"commands without --json: {missing}"


def test_logs_and_weights_push_print_json(stack, tmp_path):
    run_id = f"ds-{uuid.uuid4().hex[:6]}-v1"  # the moto server's log group is shared by the session's tests
    stack.add_run(run_id, "a", RunStatus.TRAINING)
    logs = stack.client("logs")
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{run_id}-a1/algo-1-1")
    logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{run_id}-a1/algo-1-1",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "epoch 1 done"}])
    result = stack.cli("logs", run_id, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"stream": f"{run_id}-a1/algo-1-1", "message": "epoch 1 done"}]
    pt = tmp_path / "base.pt"
    pt.write_bytes(b"w")
    result = stack.cli("weights", "push", str(pt), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"key": "models/pretrained/base.pt", "name": "base.pt",
                                         "uri": f"s3://{stack.bucket}/models/pretrained/base.pt"}


@pytest.fixture
def deploys(monkeypatch):
    """`local up` stops right where it would deploy the template, and shows what it would deploy with."""
    import yoloops.demo
    from yoloops.local.deploy import DeployError

    seen: list[dict[str, str]] = []

    def fake_start(workdir, port=0, hyperparameters=None, parameters=None, **_kw):
        seen.append(dict(parameters or {}))
        raise DeployError("stopped by the test before deploying")

    monkeypatch.setattr(yoloops.demo, "start_local_stack", fake_start)
    return seen


@pytest.mark.parametrize("args", [
    ["--parameter-overrides", "UploadQuietSeconds=5", "LogLevel=DEBUG", "ParameterKey=MinFirstMetric,ParameterValue=0.1"],
    ["--parameter-overrides", "UploadQuietSeconds=5 LogLevel=DEBUG ParameterKey=MinFirstMetric,ParameterValue=0.1"],
    ["--parameter-overrides", "UploadQuietSeconds=5", "--parameter-overrides", "LogLevel=DEBUG",
     "ParameterKey=MinFirstMetric,ParameterValue=0.1", "--port", "0"],
], ids=["separate-arguments", "one-quoted-string", "repeated-and-mixed"])
def test_parameter_overrides_take_separate_arguments_like_sam_deploy(deploys, tmp_path, args):
    result = CliRunner().invoke(app, ["local", "up", "--dir", str(tmp_path / "s"), *args])
    assert result.exit_code == 1 and "stopped by the test before deploying" in result.stderr
    assert {k: deploys[0][k] for k in ("UploadQuietSeconds", "LogLevel", "MinFirstMetric")} == \
        {"UploadQuietSeconds": "5", "LogLevel": "DEBUG", "MinFirstMetric": "0.1"}


def test_stray_arguments_without_parameter_overrides_are_refused(deploys, tmp_path):
    result = CliRunner().invoke(app, ["local", "up", "--dir", str(tmp_path / "s"), "LogLevel=DEBUG"])
    assert result.exit_code == 2 and "unexpected extra arguments 'LogLevel=DEBUG'" in result.stderr
    result = CliRunner().invoke(app, ["local", "up", "--parameter-overrides", "LogLevel=DEBUG", "oops"])
    assert result.exit_code == 1 and "'oops' is not Key=Value" in result.stderr
    assert deploys == []


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The yoloops modules a file imports, at any depth (lazy imports count: they cycle at run time)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            # `from pkg import submodule` needs the submodule; `from mod import name` needs mod.
            names.update(subs if subs else {node.module})
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names & modules


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_no_import_cycles_and_command_modules_never_import_the_package_above_them():
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: _imports(p, set(modules)) - {m} for m, p in modules.items()}
    for m in [m for m in modules if m.startswith("yoloops.cli.")]:
        assert "yoloops.cli" not in graph[m], f"{m} imports yoloops.cli, the package above it"

    def reach(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return seen

    cycles = sorted(m for m in modules if m in reach(m))
    assert cycles == [], f"modules in an import cycle: {cycles}"
