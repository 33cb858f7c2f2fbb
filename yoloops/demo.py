"""`make demo` = `yoloops demo`: the whole pipeline on this machine, exactly as a user would run it.

1. start the local stack (moto server, the real template, in-process Lambdas, train.py as a process);
2. generate a small learnable dataset (yoloops.synth) and `dataset push` it through the CLI's own code;
3. the manifest's S3 notification fires the real trigger, the real ASL runs: validate, budget gate,
   training on the CPU, evaluation, promotion, notification -> Slack (a local receiver);
4. print the Slack message and the champion; push a second version that fine-tunes from the first
   version's champion (`--weights champion`) and show promoted or kept;
5. print the champion's model bundle (best.pt, ONNX, OpenVINO, TorchScript, model.json, DEPLOY.md) and
   the wall time.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from yoloops_core.weights import describe as describe_weights

from yoloops import synth
from yoloops.bundle import champion_files
from yoloops.client import Stack, load_local_stack
from yoloops.datasets import push, wait_and_report
from yoloops.views import print_run

console = Console(highlight=False, soft_wrap=True)

# The measured CPU recipe for the synthetic shapes (yoloops.synth): yoloops-tiny.yaml (shipped next to
# train.py), 64 px, SGD, no warm-up or mosaic. Half the data makes a weaker first version, so the second
# push shows a better model promoted.
DEMO_HYPERPARAMETERS = dict(synth.DEMO_HYPERPARAMETERS)
# A real floor for the first model (the recipe's v1 measured mAP50-95 0.21; 0.12 before the objects grew,
# synth.DEMO_DATASET): a model that learned nothing never becomes the first champion.
DEMO_PARAMETERS = {"MinFirstMetric": "0.05"}


@dataclass
class DemoSettings:
    workdir: Path = Path(".local/demo")
    keep_up: bool = False
    epochs: int = int(DEMO_HYPERPARAMETERS["epochs"])
    imgsz: int = synth.DEMO_DATASET["imgsz"]
    n_train: int = synth.DEMO_DATASET["n_train"] // 2
    n_val: int = synth.DEMO_DATASET["n_val"]
    second_n_train: int = synth.DEMO_DATASET["n_train"]  # the second version: twice the data, a better model
    seed: int = 0
    port: int = 0
    run_timeout: float = 900
    hyperparameters: dict[str, str] = field(default_factory=dict)

    def training_hyperparameters(self) -> dict[str, str]:
        hp = {**DEMO_HYPERPARAMETERS, "epochs": str(self.epochs), "imgsz": str(self.imgsz)}
        hp.update(self.hyperparameters)
        return hp


def local_parameters(hyperparameters: dict[str, str] | None = None, log_level: str = "INFO") -> dict[str, str]:
    """Template parameters for a laptop: a CPU instance type (its price feeds the budget gate), a short
    runtime cap, and the hyperparameter defaults that make training fit a CPU."""
    params = {"MaxRuntimeSeconds": "1800", "InstanceType": "ml.m5.large", "LogLevel": log_level}
    if hyperparameters:
        params["DefaultHyperparameters"] = json.dumps(hyperparameters, sort_keys=True)
    return params


def start_local_stack(workdir: Path, port: int = 0, epochs: int | None = None,
                      hyperparameters: dict[str, str] | None = None, log_level: str = "INFO",
                      checkpoint_sync_s: float = 1.0, parameters: dict[str, str] | None = None) -> Any:
    """Start the local stack with the process training backend (what `local up` and the demo run).

    checkpoint_sync_s: how often checkpoints go to S3 while a job trains (what lets an interrupted job
    resume); they are always synced when the job ends.
    """
    from yoloops.local import LocalStack, ProcessTrainingBackend

    hp = dict(hyperparameters or {})
    if epochs is not None:
        hp.setdefault("epochs", str(epochs))
    workdir = Path(workdir)
    stack = LocalStack(workdir=workdir, port=port,
                       training=ProcessTrainingBackend(workdir / "training", checkpoint_sync_s=checkpoint_sync_s),
                       parameters={**local_parameters(hp, log_level), **(parameters or {})})
    stack.start()
    return stack


def _mrkdwn(text: str) -> str:
    """Slack mrkdwn -> plain text: <url|label> -> label (url), *bold* -> bold, &lt; &gt; &amp; -> < > &."""
    text = re.sub(r"<([^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r"<([^>]+)>", r"\1", text).replace("*", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_slack(message: dict[str, Any]) -> str:
    """Block Kit payload -> readable text (what Slack would show)."""
    lines: list[str] = []

    def text_of(obj: Any) -> str:
        return _mrkdwn(obj.get("text", "") if isinstance(obj, dict) else str(obj or ""))

    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind in ("header", "section"):
            if block.get("text"):
                lines.append(text_of(block["text"]))
            # fields are "*Label*\nvalue": one "Label: value" line each
            lines.extend("  " + text_of(f).replace("\n", ": ", 1) for f in block.get("fields") or [])
        elif kind == "context":
            lines.append(" · ".join(text_of(e) for e in block.get("elements") or []))
        elif kind == "divider":
            lines.append("-" * 40)
    for att in message.get("attachments") or []:
        lines.append(render_slack(att))
    if not lines and message.get("text"):
        lines.append(_mrkdwn(str(message["text"])))
    return "\n".join(line for line in lines if line)


def _new_messages(local: Any, seen: int) -> list[dict[str, Any]]:
    return list(local.slack_messages[seen:])


def _show_run(stack: Any, run_id: str, waited: Any, local: Any, seen: int, t_push: float) -> tuple[str, int]:
    local.lambdas.wait_idle(30)  # SNS -> slack-notifier is asynchronous
    status = (waited.run or {}).get("status") or waited.execution_status
    console.print(f"\nrun [bold]{run_id}[/] finished: [bold]{status}[/] in {time.monotonic() - t_push:.0f} s")
    if waited.run:
        print_run(stack, waited.run, stack.execution_states(run_id))
    messages = _new_messages(local, seen)
    if not messages:
        console.print("[red]no Slack message arrived at the local receiver[/]")
    for m in messages:
        console.print(Panel(render_slack(m), title="Slack", border_style="magenta"))
    return str(status), len(local.slack_messages)


def _show_bundle(stack: Any, dataset: str) -> dict[str, int]:
    """The champion's model bundle, as `yoloops champion shapes --download DIR` would fetch it."""
    files = champion_files(stack, dataset)
    console.rule(f"champion bundle of {dataset}")
    console.print(f"$ yoloops --local {stack.info.workdir} champion {dataset} --download ./{dataset}-model")
    for name, size in sorted(files.items()):
        console.print(f"  {name:<48} {size / 1e3:>10.1f} kB")
    if not files:
        console.print("[red]the champion has no bundle files[/]")
    return files


def run_demo(settings: DemoSettings, local: Any = None) -> bool:
    """Run the demo; with `local` (a started LocalStack) it runs there and leaves the stack up."""
    t0 = time.monotonic()
    own_stack = local is None
    workdir = settings.workdir
    hp = settings.training_hyperparameters()
    console.rule("[bold]yoloops demo")
    if own_stack:
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        console.print(f"starting the local stack in {workdir}/ (moto server, template.yaml, local training) ...")
        local = start_local_stack(workdir, port=settings.port, hyperparameters=hp, log_level="WARNING",
                                  parameters=DEMO_PARAMETERS)
    try:
        return _demo_steps(settings, local, t0)
    finally:
        if own_stack:
            local.stop()


def _demo_steps(settings: DemoSettings, local: Any, t0: float) -> bool:
    from yoloops.synth import generate_dataset

    workdir = settings.workdir
    console.print(f"  endpoint {local.endpoint_url}  bucket {local.outputs.get('ArtifactsBucketName')} "
                  f"(up after {time.monotonic() - t0:.1f} s)")
    console.print(f"  training hyperparameters: {json.dumps(settings.training_hyperparameters(), sort_keys=True)}")
    # The same discovery the CLI does in another shell: <workdir>/stack.json.
    stack = Stack(load_local_stack(local.workdir))
    outcomes: list[str] = []
    bases: list[str] = []  # each verdict's basis: v2 must be paired (scored beside the champion, same images)
    seen = len(local.slack_messages)
    # v2 fine-tunes from v1's champion (the weights channel), as a team's next dataset version would.
    versions = [("v1", settings.n_train, settings.seed, None),
                ("v2", settings.second_n_train, settings.seed + 1, "champion")]
    for version, n_train, seed, weights in versions:
        data_dir = workdir / "datasets" / f"shapes-{version}"
        generate_dataset(data_dir, n_train=n_train, n_val=settings.n_val, imgsz=settings.imgsz, seed=seed,
                         object_size=synth.DEMO_DATASET["object_size"])
        console.rule(f"dataset push shapes {version}")
        console.print(f"$ yoloops --local {local.workdir} dataset push {data_dir} --name shapes "
                      f"--version {version}" + (f" --weights {weights}" if weights else "") + " --wait")
        t_push = time.monotonic()
        result = push(stack, data_dir, "shapes", version, weights=weights)  # the CLI command's own code
        console.print(f"pushed {result.files} files; run id [bold cyan]{result.run_id}[/]")
        waited = wait_and_report(stack, result.run_id, settings.run_timeout)
        status, seen = _show_run(stack, result.run_id, waited, local, seen, t_push)
        outcomes.append(status)
        bases.append(str(((waited.run or {}).get("verdict") or {}).get("basis")))
        started_from = (waited.run or {}).get("base_weights")
        console.print(f"started from: [bold]{describe_weights(started_from)}[/]")
        champion = stack.get_champion("shapes")
        if champion:
            value = champion.get("metric_value")
            shown = f"{value:.4f}" if isinstance(value, int | float) else "-"
            console.print(f"champion of shapes: [bold green]{champion['run_id']}[/] {champion.get('metric')}={shown}")
        else:
            console.print("[red]shapes has no champion[/]")
    bundle = _show_bundle(stack, "shapes")
    ok = outcomes[0] == "PROMOTED" and outcomes[1] in ("PROMOTED", "KEPT") and len(local.slack_messages) >= 2 \
        and "best.pt" in bundle and bases == ["first", "paired"]
    console.rule()
    verdict = "[bold green]demo OK[/]" if ok else "[bold red]demo FAILED[/]"
    console.print(f"{verdict}: v1 {outcomes[0]}, v2 {outcomes[1]} ({bases[1]} verdict); "
                  f"{len(local.slack_messages)} Slack messages; "
                  f"wall time {time.monotonic() - t0:.0f} s")
    if settings.keep_up:
        console.print(f"\nthe stack stays up: `yoloops --local {local.workdir} runs`, "
                      f"`yoloops --local {local.workdir} champion shapes`; Ctrl-C stops it")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return ok
