"""`yoloops local up | release | interrupt` and `yoloops demo`: the pipeline on this machine."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from yoloops.cli.common import emit_json, handle_errors, state_of
from yoloops.client import DEFAULT_LOCAL_DIR, BadInput, CliError, StackNotRunning
from yoloops.views import err, out

app = typer.Typer()
local_app = typer.Typer(no_args_is_help=True, help="The local stack: the whole pipeline, no AWS account.")
app.add_typer(local_app, name="local")

LOCAL_DIR = Path(DEFAULT_LOCAL_DIR)
DEMO_DIR = Path(".local/demo")


@local_app.command("up", context_settings={"allow_extra_args": True})
@handle_errors
def local_up(
    ctx: typer.Context,
    port: int = typer.Option(0, "--port", help="moto server port (0: any free port)."),
    workdir: Annotated[Path, typer.Option("--dir", help="Working directory of the stack.")] = LOCAL_DIR,
    epochs: int | None = typer.Option(None, "--epochs", help="Default training epochs of runs (default 8)."),
    parameter_overrides: Annotated[list[str] | None, typer.Option(
        "--parameter-overrides", help="Template parameters as `sam deploy` takes them: Key=Value Key2=Value2 "
        "(separate arguments, one quoted string, or the option repeated); checked as CloudFormation checks them.")
    ] = None,
) -> None:
    """Start the local stack (moto server, template deployed, local training) until Ctrl-C."""
    from yoloops.demo import DemoSettings, start_local_stack
    from yoloops.local.deploy import DeployError
    from yoloops.local.release import ReleaseError, parse_parameter_overrides

    # Click gives an option one value: the words after it (`A=1 B=2`, as sam deploy takes them) are extra args.
    if ctx.args and not parameter_overrides:
        raise BadInput(f"unexpected extra arguments {' '.join(ctx.args)!r} (template parameters go after "
                       "--parameter-overrides)")
    try:
        overrides = parse_parameter_overrides([*(parameter_overrides or []), *ctx.args])
    except ReleaseError as exc:
        raise CliError(str(exc)) from None
    # Runs train on this machine's CPU: the demo's tiny hyperparameters are the stack's defaults.
    hp = DemoSettings(**({"epochs": epochs} if epochs else {})).training_hyperparameters()
    try:
        stack = start_local_stack(workdir, port=port, hyperparameters=hp, parameters=overrides)
    except DeployError as exc:
        raise CliError(f"cannot deploy the local stack: {exc}") from None
    try:
        outputs = stack.outputs
        out.print(f"[bold green]local stack up[/] in {workdir}/")
        out.print(f"  endpoint   {stack.endpoint_url}")
        out.print(f"  bucket     {outputs.get('ArtifactsBucketName')}")
        out.print(f"  webhook    {outputs.get('GithubWebhookUrl', '-')}")
        out.print(f"  state machine {outputs.get('TrainingStateMachineArn')}")
        out.print("\nIn another shell:")
        out.print(f"  export AWS_ENDPOINT_URL={stack.endpoint_url} AWS_ACCESS_KEY_ID=testing "
                  "AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1")
        out.print(f"  export YOLOOPS_LOCAL={workdir}")
        out.print("  yoloops dataset push DIR --name shapes --wait")
        out.print("\nCtrl-C stops it.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        err.print("stopping the local stack")
    finally:
        stack.stop()


@local_app.command("release")
@handle_errors
def local_release_cmd(
    ctx: typer.Context,
    tag: str = typer.Argument(..., help="Release tag = training image tag (e.g. v1.2.0)."),
    dataset: str | None = typer.Option(None, "--dataset", help="NAME or NAME/VERSION to train (default: newest)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Do what CI + GitHub do on a release: push the image tag to local ECR, POST the signed webhook."""
    from yoloops.local.release import ReleaseError, local_release

    st = state_of(ctx)
    st.local = st.local or os.environ.get("YOLOOPS_LOCAL") or DEFAULT_LOCAL_DIR
    if not st.stack.info.local:
        raise CliError("`local release` needs the local stack (`yoloops local up`)")
    try:
        result = local_release(st.stack, tag, dataset=dataset)
    except ReleaseError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        emit_json(result)
    else:
        out.print(f"image {result['image']} ({result['digest'][:19]}...) registered; webhook answered {result['status']}")
        if result.get("run_id"):
            out.print(f"run {result['run_id']} {'started' if result.get('started') else 'already exists'}")
        if result.get("reason") or result.get("error"):
            err.print(escape(str(result.get("reason") or result.get("error"))))
    if result["status"] >= 300:
        raise typer.Exit(1)


@local_app.command("interrupt")
@handle_errors
def local_interrupt(
    ctx: typer.Context,
    job: str = typer.Argument(..., help="Training job name (<run id>-a<attempt>)."),
) -> None:
    """Interrupt a local training job the way a spot interruption does (it resumes from its checkpoint)."""
    import urllib.error
    import urllib.request

    st = state_of(ctx)
    st.local = st.local or os.environ.get("YOLOOPS_LOCAL") or DEFAULT_LOCAL_DIR
    info = st.stack.info
    if not info.local or not info.control_url:
        raise CliError("`local interrupt` needs the local stack (`yoloops local up`)")
    req = urllib.request.Request(f"{info.control_url.rstrip('/')}/interrupt/{job}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read().decode() or "ok"
    except urllib.error.HTTPError as exc:
        raise CliError(f"cannot interrupt {job}: {exc.code} {exc.read().decode(errors='replace')}") from exc
    except urllib.error.URLError as exc:
        raise StackNotRunning(f"the local stack control endpoint {info.control_url} is not answering: "
                              "start it with `yoloops local up`") from exc
    out.print(f"interrupted {job}: {body}")


@app.command("demo")
@handle_errors
def demo_cmd(
    workdir: Annotated[Path, typer.Option("--dir", help="Working directory (wiped first).")] = DEMO_DIR,
    keep_up: bool = typer.Option(False, "--keep-up", help="Leave the stack running for exploration."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs (default: the demo recipe's)."),
    imgsz: int | None = typer.Option(None, "--imgsz", min=32, help="Image size (default: the demo recipe's)."),
) -> None:
    """The whole pipeline on this machine: local stack, dataset push, training, promotion, Slack."""
    from yoloops.demo import DemoSettings, run_demo

    overrides = {k: v for k, v in (("epochs", epochs), ("imgsz", imgsz)) if v is not None}
    ok = run_demo(DemoSettings(workdir=workdir, keep_up=keep_up, **overrides))
    if not ok:
        raise typer.Exit(1)
