"""The SageMaker training entrypoint (training_container/train.py), exercised on the CPU.

One real 2-epoch run is shared by several tests (module fixture); the resume test runs the entrypoint as
separate processes so SIGTERM and kill -9 hit a real process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from container_helpers import TRAIN_PY, load_train_module, make_base
from yoloops_core.metrics import METRIC_DEFINITIONS, format_metric_line

TINY = {"model": "yolo11n.yaml", "epochs": "2", "imgsz": "64", "batch": "8",
        "sagemaker_program": "train.py", "sagemaker_submit_directory": "s3://x/y"}


class _NoNetwork:
    """Records and refuses every attempt to open a network connection or resolve a name."""

    def __init__(self):
        self.attempts: list[str] = []

    def _refuse(self, what):
        def refuse(*args, **kwargs):
            self.attempts.append(f"{what}{args[1:2] or args[:1]}")
            raise OSError(f"network access attempted in an offline test: {what}")
        return refuse

    def install(self, mp: pytest.MonkeyPatch):
        mp.setattr(socket.socket, "connect", self._refuse("connect"))
        mp.setattr(socket.socket, "connect_ex", self._refuse("connect_ex"))
        mp.setattr(socket, "create_connection", self._refuse("create_connection"))
        mp.setattr(socket, "getaddrinfo", self._refuse("getaddrinfo"))


def _run_main(mod, base: Path, mp: pytest.MonkeyPatch, extra_env: dict | None = None) -> tuple[int, str]:
    mp.setenv("SAGEMAKER_BASE_DIR", str(base))
    for k in ("SM_CHANNEL_TRAIN", "SM_CHANNEL_WEIGHTS", "DATASET_ROOT", "BASE_WEIGHTS", "WANDB_SECRET_ARN"):
        mp.delenv(k, raising=False)
    for k, v in (extra_env or {}).items():
        mp.setenv(k, v)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = mod.main([])
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real run: Roboflow layout, W&B secret set (wandb absent -> warning only), sockets forbidden."""
    from moto import mock_aws

    tmp = tmp_path_factory.mktemp("trained")
    base = make_base(tmp / "ml", {**TINY, "dataset_version": "2026-12-01"}, n_train=24, n_val=12, layout="roboflow")
    guard = _NoNetwork()
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1", "YOLO_OFFLINE": "1",
                     "YOLO_CONFIG_DIR": str(tmp / "ultralytics-config"),
                     "MPLCONFIGDIR": str(tmp / "mpl")}.items():
            mp.setenv(k, v)
        import boto3

        arn = boto3.client("secretsmanager").create_secret(Name="wandb", SecretString='{"api_key": "k"}')["ARN"]
        guard.install(mp)  # after moto/boto3 setup; moto itself never opens sockets either
        mod = load_train_module()
        t0 = time.monotonic()
        rc, stdout = _run_main(mod, base, mp, {"WANDB_SECRET_ARN": arn})
        seconds = time.monotonic() - t0
    return {"base": base, "rc": rc, "stdout": stdout, "guard": guard, "seconds": seconds, "mod": mod}


@pytest.mark.slow
def test_training_run_produces_every_output(trained):
    base = trained["base"]
    assert trained["rc"] == 0, (base / "output" / "failure").read_text()
    assert not (base / "output" / "failure").exists()
    model = base / "model"
    for name in ("best.pt", "metrics.json", "results.csv", "args.yaml"):
        assert (model / name).stat().st_size > 0, name
    metrics = json.loads((model / "metrics.json").read_text())
    for key in ("mAP50", "mAP50-95", "precision", "recall"):
        assert 0.0 <= metrics[key] <= 1.0
    assert set(metrics["per_class_mAP50-95"]) == {"circle", "square", "triangle"}
    assert metrics["epochs_run"] == 2 and metrics["epochs_requested"] == 2
    # the first model of a dataset: no champion channel, so nothing paired; no test split in this upload
    assert metrics["evaluation"]["champion"]["status"] == "none" and set(metrics["evaluation"]["splits"]) == {"val"}
    assert metrics["evaluation"]["splits"]["val"]["images"] == 12 and "champion" not in metrics["evaluation"][
        "splits"]["val"]
    assert metrics["images_per_s"] > 0
    assert metrics["time_to_first_step_s"] > 0
    rows = (model / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 epochs
    args = (model / "args.yaml").read_text()
    assert "epochs: 2" in args and "imgsz: 64" in args and "batch: 8" in args
    # the Roboflow YAML's ../train/images was rewritten to the channel
    assert f"data: {base / 'tmp' / 'data.yaml'}" in args  # scratch: <base>/tmp locally, /tmp/yoloops on SageMaker
    # checkpoints in the checkpoint dir, label caches kept next to them for a restarted job
    assert (base / "checkpoints" / "last.pt").exists()
    assert list((base / "checkpoints" / "label_cache").glob("*.cache"))
    # ~35 s training + ~15 s for the bundle's four exports and latency runs on an idle 2-core machine
    assert trained["seconds"] < 150


@pytest.mark.slow
def test_no_socket_is_opened_and_wandb_failure_only_warns(trained):
    assert trained["guard"].attempts == []
    assert trained["rc"] == 0
    # wandb is not installed here: the run continued (the warning went to stderr)


@pytest.mark.slow
def test_metric_definitions_match_real_output(trained):
    lines = [ln for ln in trained["stdout"].splitlines() if ln.startswith("yoloops-metric")]
    assert len(lines) == 3  # two epochs + the closing best.pt validation
    assert lines[0].startswith("yoloops-metric epoch=1 ") and "epoch=2 " in lines[1]
    for d in METRIC_DEFINITIONS:
        rx = re.compile(d["Regex"])
        if d["Name"] == "gpu_util":  # NVML only: a CPU run leaves it out (its regex: test_gpu_util_in_the_line)
            assert not any(rx.search(ln) for ln in lines)
            continue
        assert any(rx.search(ln) for ln in lines), d
        for ln in lines[:2]:  # every epoch line carries every metric
            assert rx.search(ln), (d, ln)
    # the last line is best.pt's validation: SageMaker's FinalMetricDataList picks it
    final = json.loads((trained["base"] / "model" / "metrics.json").read_text())
    rx = re.compile(next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == "mAP50-95"))
    assert float(rx.search(lines[-1]).group(1)) == pytest.approx(final["mAP50-95"], abs=1e-5)
    # the copy in train.py formats exactly like yoloops_core's
    sample = {"epoch": 3, "mAP50": 0.5, "mAP50-95": 0.25, "box_loss": 1.5, "images_per_s": 12.5, "gpu_util": 87.5}
    assert trained["mod"].format_metric_line(sample) == format_metric_line(sample)


@pytest.mark.slow
def test_finished_checkpoint_is_not_retrained(trained, tmp_path):
    mod = trained["mod"]
    base = tmp_path / "ml"
    shutil.copytree(trained["base"] / "input", base / "input")
    shutil.copytree(trained["base"] / "checkpoints", base / "checkpoints")
    (base / "checkpoints" / mod.DONE_MARKER).unlink()  # judge by the checkpoint itself
    before = {p.name: p.read_bytes() for p in (base / "checkpoints").glob("*.pt")}
    results = (base / "checkpoints" / "results.csv").read_text()
    with pytest.MonkeyPatch.context() as mp:
        rc, stdout = _run_main(mod, base, mp)
    assert rc == 0
    assert "epoch=" in stdout and "box_loss" not in stdout  # only the closing validation line, no epochs
    assert {p.name: p.read_bytes() for p in (base / "checkpoints").glob("*.pt")} == before
    assert (base / "checkpoints" / "results.csv").read_text() == results
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["retrained"] is False
    assert (base / "model" / "best.pt").exists()


def _failure(base: Path) -> str:
    text = (base / "output" / "failure").read_text()
    assert text.count("\n") == 1 and text.endswith("\n")  # exactly one line
    return text.strip()


@pytest.mark.parametrize(
    ("hyper", "expected"),
    [
        ({"epochs": "ten"}, "bad hyperparameter epochs='ten': expected int"),
        ({"epoch": "3"}, "unknown hyperparameter(s) ['epoch']"),
        ({"imgsz": "100"}, "imgsz must be a multiple of 32"),
        ({"cache": "gpu"}, "cache must be auto|ram|disk|none"),
    ],
)
def test_bad_hyperparameter_writes_failure(train_module, tmp_path, hyper, expected):
    base = make_base(tmp_path, hyper, n_train=2, n_val=1)
    with pytest.MonkeyPatch.context() as mp:
        rc, _ = _run_main(train_module, base, mp)
    assert rc != 0
    assert expected in _failure(base)
    assert not (base / "model" / "best.pt").exists()


def test_broken_dataset_writes_failure(train_module, tmp_path):
    base = make_base(tmp_path, {"epochs": "1"}, n_train=2, n_val=1)
    shutil.rmtree(base / "input" / "data" / "train" / "images" / "val")
    with pytest.MonkeyPatch.context() as mp:
        rc, _ = _run_main(train_module, base, mp)
    assert rc != 0
    assert "dataset split 'val' path 'images/val' not found" in _failure(base)


def test_dataset_without_yaml_writes_failure(train_module, tmp_path):
    base = make_base(tmp_path, {"epochs": "1"}, n_train=2, n_val=1)
    (base / "input" / "data" / "train" / "data.yaml").unlink()
    with pytest.MonkeyPatch.context() as mp:
        rc, _ = _run_main(train_module, base, mp)
    assert rc != 0
    assert "no dataset YAML with train/val/names" in _failure(base)


def test_hyperparameters_are_typed(train_module):
    cfg = train_module.parse_hyperparameters(
        {"epochs": "3", "lr0": "0.02", "cos_lr": "true", "model": '"yolo11s.yaml"', "sagemaker_region": "x"})
    assert (cfg.epochs, cfg.lr0, cfg.cos_lr, cfg.model) == (3, 0.02, True, "yolo11s.yaml")
    with pytest.raises(train_module.JobFailure, match="expected bool"):
        train_module.parse_hyperparameters({"plots": "maybe"})
    with pytest.raises(train_module.JobFailure, match="expected int"):
        train_module.parse_hyperparameters({"epochs": "2.5"})


@pytest.mark.parametrize("layout", ["ultralytics", "roboflow"])
def test_dataset_layouts_and_zip_channel(train_module, tmp_path, layout):
    import yaml

    from yoloops.synth import generate_dataset

    src = tmp_path / "src"
    generate_dataset(src, n_train=3, n_val=2, imgsz=64, layout=layout)
    ds = train_module.prepare_dataset(src, tmp_path / "work")
    data = yaml.safe_load(ds.yaml_path.read_text())
    # normalized by yoloops_train.layouts: absolute image lists, whatever the export's layout
    assert Path(data["train"]).is_file() and Path(data["val"]).is_file()
    assert (ds.n_train, ds.n_val, ds.names) == (3, 2, ["circle", "square", "triangle"])
    # the datasets/<name>/<version>.zip form: the channel holds one zip, the container extracts it
    channel = tmp_path / "channel"
    channel.mkdir()
    with zipfile.ZipFile(channel / "v1.zip", "w") as zf:
        for f in src.rglob("*"):
            if f.is_file():
                zf.write(f, Path("shapes") / f.relative_to(src))
    ds2 = train_module.prepare_dataset(channel, tmp_path / "work2")
    assert ds2.n_train == 3 and str(ds2.root).startswith(str(tmp_path / "work2"))


def test_throughput_defaults(train_module):
    m = train_module
    cfg = m.parse_hyperparameters({"model": "yolo11n.yaml", "imgsz": "640"})
    cpu = m.resolve_throughput(cfg, m.Machine(cpus=2, gpu_count=0, gpu_mem_gb=0, bf16=False,
                                              available_ram_bytes=8 * 2**30), n_train=32, train_bytes=10**6)
    assert cpu["device"] == "cpu" and cpu["amp"] is False and cpu["workers"] == 0 and cpu["batch"] <= 16
    h200 = m.Machine(cpus=16, gpu_count=1, gpu_mem_gb=139.8, bf16=True, available_ram_bytes=120 * 2**30)
    gpu = m.resolve_throughput(cfg, h200, n_train=4000, train_bytes=4 * 10**8)
    assert gpu == {"device": "0", "batch": 128, "workers": 15, "cache": "ram", "amp": "bf16",
                   "deterministic": False}
    small = m.resolve_throughput(m.parse_hyperparameters({"model": "yolo12s.yaml"}), h200, 4000, 0)
    assert small["batch"] == 64
    # a dataset that doesn't fit in RAM is read from disk; explicit hyperparameters always win
    low_ram = m.Machine(cpus=8, gpu_count=1, gpu_mem_gb=24, bf16=False, available_ram_bytes=2**30)
    auto = m.resolve_throughput(cfg, low_ram, n_train=4000, train_bytes=0)
    assert auto["cache"] is False and auto["amp"] is True
    pinned = m.parse_hyperparameters({"batch": "16", "workers": "2", "cache": "disk", "amp": "fp32"})
    fixed = m.resolve_throughput(pinned, h200, 4000, 0)
    assert (fixed["batch"], fixed["workers"], fixed["cache"], fixed["amp"]) == (16, 2, "disk", False)


def _start(base: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "YOLO_CONFIG_DIR": str(base.parent / "ucfg"),
           "MPLCONFIGDIR": str(base.parent / "mpl"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(TRAIN_PY)], env=env, stdout=subprocess.PIPE,
                            stderr=log.open("ab"), text=True)


def _wait_for_epoch_line(proc: subprocess.Popen, seen: list[str], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("yoloops-metric epoch="):
            return line
        assert time.monotonic() < deadline, "no epoch line in time"
    raise AssertionError("process ended before an epoch finished: " + "".join(seen[-5:]))


def _ckpt_epoch(last: Path) -> int:
    import torch

    return int(torch.load(last, map_location="cpu", weights_only=False)["epoch"])


@pytest.mark.slow
def test_sigterm_then_kill9_then_resume_to_the_requested_epochs(tmp_path):
    base = make_base(tmp_path / "ml", {**TINY, "epochs": "4"}, n_train=32, n_val=8)
    log = tmp_path / "stderr.log"
    last = base / "checkpoints" / "last.pt"

    # 1) SIGTERM after the first epoch: clean stop, failure line, checkpoint kept, non-zero exit
    proc, seen = _start(base, log), []
    _wait_for_epoch_line(proc, seen)
    proc.send_signal(signal.SIGTERM)
    seen.extend(proc.stdout)
    all_lines = seen
    assert proc.wait(timeout=60) != 0
    assert "SIGTERM" in _failure(base)
    e1 = _ckpt_epoch(last)
    assert e1 >= 0

    # 2) restart: resumes after the saved epoch; kill -9 once it has saved at least one more epoch
    (base / "output" / "failure").unlink()
    proc, seen = _start(base, log), []
    line = _wait_for_epoch_line(proc, seen)
    assert line.startswith(f"yoloops-metric epoch={e1 + 2} "), line
    while _ckpt_epoch(last) < e1 + 1:
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    seen.extend(proc.stdout)
    all_lines = all_lines + seen
    e2 = _ckpt_epoch(last)  # the atomic write leaves a loadable checkpoint whatever the kill interrupted
    assert e1 + 1 <= e2 < 3, "the run finished before the kill; make the dataset bigger"

    # 3) restart again: resumes at the right epoch and ends with the requested 4 epochs
    proc, seen = _start(base, log), list(all_lines)
    seen.extend(proc.stdout)
    assert proc.wait(timeout=180) == 0, log.read_text()[-2000:]
    # across the three processes every epoch's line was printed exactly once
    epochs = [int(m.group(1)) for ln in seen if (m := re.match(r"yoloops-metric epoch=(\d+) .*box_loss", ln))]
    assert epochs == [1, 2, 3, 4], seen
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 4
    assert len((base / "model" / "results.csv").read_text().strip().splitlines()) == 5
    assert not (base / "output" / "failure").exists()


def test_wandb_run_id_kept_in_checkpoint_dir_and_failures_only_warn(train_module, tmp_path, monkeypatch):
    import types

    import boto3
    from moto import mock_aws

    ids = iter(["first-id", "second-id"])
    calls: list[dict] = []

    def init(**kw):
        if kw["project"] == "unreachable":
            raise ConnectionError("api.wandb.ai unreachable")
        calls.append(kw)
        return types.SimpleNamespace(log=lambda *a, **k: None, summary={}, finish=lambda: None)

    fake = types.SimpleNamespace(util=types.SimpleNamespace(generate_id=lambda: next(ids)),
                                 Settings=lambda **kw: kw, init=init)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_API_KEY", "placeholder")  # restored after the test
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="wandb", SecretString='{"api_key": "KEY"}')["ARN"]
        monkeypatch.setenv("WANDB_SECRET_ARN", arn)
        train_module.WandbRun(tmp_path, "yoloops", {}).finish()
        assert os.environ["WANDB_API_KEY"] == "KEY"
        train_module.WandbRun(tmp_path, "yoloops", {}).finish()  # the restarted job
        broken = train_module.WandbRun(tmp_path, "unreachable", {})
    assert [c["id"] for c in calls] == ["first-id", "first-id"]
    assert all(c["resume"] == "allow" for c in calls)
    assert (tmp_path / "wandb_run_id").read_text() == "first-id"
    assert broken.run is None
    broken.log({"x": 1}, step=1)  # a disabled run ignores logging


@pytest.mark.slow
def test_the_job_leaves_a_complete_model_bundle(trained):
    """best.pt, ONNX (pinned opset, fixed input), OpenVINO IR, TorchScript, model.json and DEPLOY.md."""
    import onnx

    model = trained["base"] / "model"
    for name in ("best.pt", "model.onnx", "model.torchscript", "model.json", "DEPLOY.md"):
        assert (model / name).stat().st_size > 0, name
    assert list((model / "model_openvino_model").glob("*.xml")) and list((model / "model_openvino_model").glob("*.bin"))
    graph = onnx.load(str(model / "model.onnx"))
    assert [o.version for o in graph.opset_import if o.domain in {"", "ai.onnx"}] == [17]
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]  # fixed: no symbolic batch or size
    info = json.loads((model / "model.json").read_text())
    assert info["class_names"] == ["circle", "square", "triangle"] and info["input"]["shape"] == [1, 3, 64, 64]
    assert info["hyperparameters"]["epochs"] == 2 and info["base_weights"] == "yolo11n.yaml"
    assert info["training_data"] == {"dataset_version": "2026-12-01", "train_images": 24, "val_images": 12}
    metrics = json.loads((model / "metrics.json").read_text())
    assert info["metrics"]["mAP50-95"] == metrics["mAP50-95"]
    assert set(info["metrics"]["per_class_mAP50-95"]) == {"circle", "square", "triangle"}
    assert set(info["formats"]) == {"pytorch", "onnx", "openvino", "torchscript"}
    for fmt, f in info["formats"].items():
        assert f["cpu_latency_ms"] > 0 and f["latency_runs"] >= 1, fmt
        assert (model / f["file"]).exists(), fmt
        if fmt != "pytorch":  # every export computes what best.pt computes
            assert f["output_shape"] == info["formats"]["pytorch"]["output_shape"]
            assert f["max_abs_diff_vs_pytorch"] < 0.05, (fmt, f)
    deploy = (model / "DEPLOY.md").read_text()
    assert "trtexec --onnx=model.onnx" in deploy and "format=engine" in deploy and "Jetson" in deploy
    scratch = trained["mod"].Paths.from_env({"SAGEMAKER_BASE_DIR": str(trained["base"])}).work
    assert not (scratch / "bundle").exists() or not any((scratch / "bundle").iterdir())


@pytest.mark.slow
def test_a_failed_export_fails_the_job_and_leaves_no_bundle(trained, tmp_path, monkeypatch):
    mod = trained["mod"]
    base = tmp_path / "ml"
    shutil.copytree(trained["base"] / "input", base / "input")
    shutil.copytree(trained["base"] / "checkpoints", base / "checkpoints")
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({**TINY, "dataset_version": "v7", "base_weights": "models/pretrained/yolo12s.pt"}))
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails, as in an image without it
    rc, _ = _run_main(mod, base, monkeypatch)
    assert rc == 2
    reason = _failure(base)
    assert reason.startswith("model export to openvino failed: ") and "openvino" in reason.split(": ", 1)[1]
    assert not (base / "model").exists()  # no partial bundle for SageMaker to upload
    # the job is not marked done by this attempt (the marker is the copied one, untouched)
    done = "checkpoints/" + mod.DONE_MARKER
    assert (base / done).read_bytes() == (trained["base"] / done).read_bytes()
