"""The model bundle for the robot, built inside the training job (no Lambda carries torch).

<base>/model gets, next to best.pt: model.onnx (opset ONNX_OPSET, fixed 1x3xSxS input), model_openvino_model/
(OpenVINO IR), model.torchscript, model.json (classes, input, data version, base weights, hyperparameters,
metrics, CPU latency per format) and DEPLOY.md. Everything is built in a staging folder and moved in only
when every format exported and ran: a failed export fails the job, naming the format, and leaves no bundle.

No TensorRT engine: an engine is specific to the GPU, TensorRT and CUDA versions it was built with, so it must
be built on the target device from model.onnx (DEPLOY.md says how).
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from .common import JobFailure, log

# 17: the newest opset TensorRT 8.5+ (JetPack 5/6), OpenVINO and ONNX Runtime all run natively.
ONNX_OPSET = 17
FORMATS = ("onnx", "openvino", "torchscript")
FILES = {"pytorch": "best.pt", "onnx": "model.onnx", "openvino": "model_openvino_model",
         "torchscript": "model.torchscript"}
_LATENCY_RUNS, _LATENCY_BUDGET_S = 20, 5.0


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _export(best: Path, fmt: str, imgsz: int) -> Path:
    from ultralytics import YOLO

    extra: dict[str, Any] = {"opset": ONNX_OPSET, "simplify": True} if fmt == "onnx" else {}
    try:
        out = YOLO(str(best)).export(format=fmt, imgsz=imgsz, batch=1, dynamic=False, half=False, device="cpu",
                                     verbose=False, **extra)
    except Exception as e:
        raise JobFailure(f"model export to {fmt} failed: {type(e).__name__}: {e}") from e
    if not out or not Path(out).exists():
        raise JobFailure(f"model export to {fmt} failed: Ultralytics returned no file")
    return Path(out)


def _runner(fmt: str, path: Path):
    """A callable running one 1x3xSxS float32 batch through the exported model on the CPU."""
    import numpy as np

    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})[0]
    if fmt == "openvino":
        import openvino as ov

        # f32, as exported: by default the CPU plugin drops to bf16 where the CPU has it (AVX512-BF16, AMX),
        # which moves box coordinates by ~0.1 px and would make the check against best.pt depend on the host.
        compiled = ov.Core().compile_model(str(next(path.glob("*.xml"))), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32"})
        return lambda x: np.asarray(compiled(x)[0])
    import torch

    if fmt == "torchscript":
        model = torch.jit.load(str(path), map_location="cpu").eval()
    else:  # pytorch
        from ultralytics import YOLO

        model = YOLO(str(path)).model.float().eval()

    def run(x):
        with torch.inference_mode():
            y = model(torch.from_numpy(x))
        return (y[0] if isinstance(y, (list, tuple)) else y).numpy()

    return run


def _measure(fmt: str, path: Path, x, reference=None) -> tuple[dict[str, Any], Any]:
    import numpy as np

    try:
        run = _runner(fmt, path)
        y = run(x)
        for _ in range(2):
            run(x)
        times, start = [], time.perf_counter()
        while len(times) < _LATENCY_RUNS and time.perf_counter() - start < _LATENCY_BUDGET_S:
            t = time.perf_counter()
            run(x)
            times.append((time.perf_counter() - t) * 1000)
    except Exception as e:
        raise JobFailure(f"exported {fmt} model does not run on the CPU: {type(e).__name__}: {e}") from e
    out: dict[str, Any] = {"cpu_latency_ms": round(statistics.median(times), 3), "latency_runs": len(times),
                           "output_shape": list(np.shape(y))}
    if reference is not None:
        if np.shape(y) != np.shape(reference):
            raise JobFailure(f"exported {fmt} model gives output shape {np.shape(y)}, PyTorch "
                             f"{np.shape(reference)}")
        out["max_abs_diff_vs_pytorch"] = round(float(np.max(np.abs(y - reference))), 6)
    return out, y


def build_bundle(model_dir: Path, staging: Path, *, imgsz: int, names: list[str], hyperparameters: dict,
                 metrics: dict, dataset_version: str, base_weights: str, n_train: int, n_val: int,
                 thresholds: dict | None = None) -> dict:
    """Export every format from model_dir/best.pt, time each on the CPU, then move the bundle in at once."""
    import numpy as np

    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    best = staging / "best.pt"
    shutil.copy2(model_dir / "best.pt", best)
    t0 = time.perf_counter()
    for fmt in FORMATS:
        out = _export(best, fmt, imgsz)
        target = staging / FILES[fmt]
        if out.resolve() != target.resolve():
            shutil.move(str(out), target)
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    formats: dict[str, Any] = {}
    ref_info, reference = _measure("pytorch", best, x)
    formats["pytorch"] = {"file": FILES["pytorch"], **ref_info}
    for fmt in FORMATS:
        info, _ = _measure(fmt, staging / FILES[fmt], x, reference)
        formats[fmt] = {"file": FILES[fmt], **info}
    formats["onnx"]["opset"] = ONNX_OPSET
    manifest = {
        "format_version": 1,
        "task": "detect",
        "class_names": list(names),
        "num_classes": len(names),
        "input": {"shape": [1, 3, imgsz, imgsz], "layout": "NCHW", "dtype": "float32", "color": "RGB",
                  "scale": "0-1 (pixel / 255)", "resize": f"letterbox to {imgsz}x{imgsz}, pad value 114"},
        "training_data": {"dataset_version": dataset_version or None, "train_images": n_train,
                          "val_images": n_val},
        "base_weights": base_weights,
        "hyperparameters": hyperparameters,
        "metrics": metrics,
        # paired.thresholds: the F1-optimal confidence on the val split, for the robot's score cut-off
        "recommended_confidence": {**(thresholds or {"overall": None, "per_class": {}}),
                                   "source": "F1-optimal point of the validator's curves on the val split"},
        "formats": formats,
        "latency_measured_on": {"machine": platform.processor() or platform.machine(), "batch": 1,
                                "input": f"{imgsz}x{imgsz}", "note": "median per call, the training instance's CPU"},
        "exported_with": {p: _version(p) for p in ("ultralytics", "torch", "onnx", "onnxruntime", "openvino")},
        "export_seconds": round(time.perf_counter() - t0, 1),
    }
    (staging / "model.json").write_text(json.dumps(manifest, indent=2))
    (staging / "DEPLOY.md").write_text(deploy_md(manifest))
    best.unlink()  # model_dir already holds it
    for item in sorted(staging.iterdir()):
        dest = model_dir / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        shutil.move(str(item), dest)
    log("bundle: " + ", ".join(f"{k} {v['cpu_latency_ms']} ms" for k, v in formats.items()) + " (CPU, batch 1)")
    return manifest


def deploy_md(m: dict) -> str:
    s = m["input"]["shape"][-1]
    lat = "\n".join(f"| {k} | `{v['file']}` | {v['cpu_latency_ms']} |" for k, v in m["formats"].items())
    return f"""# Deploying this model

Detector for {m['num_classes']} classes ({', '.join(m['class_names'])}), input 1x3x{s}x{s} float32 RGB in 0-1,
letterboxed (pad 114). Trained on dataset version `{m['training_data']['dataset_version']}` from
`{m['base_weights']}`; metrics, hyperparameters and per-format latency are in `model.json`.

| format | file | CPU latency (ms, batch 1, measured at export) |
|---|---|---|
{lat}

{_thresholds_md(m.get("recommended_confidence") or {})}

## Load each format

- **PyTorch / Ultralytics**: `from ultralytics import YOLO; YOLO("best.pt").predict("image.jpg", imgsz={s})`.
  The same call loads `model.onnx`, `model.torchscript` and `model_openvino_model/` (Ultralytics picks the
  runtime from the name) and does the letterbox and NMS for you.
- **ONNX** (opset {m['formats']['onnx']['opset']}, fixed input): `onnxruntime.InferenceSession("model.onnx")`; input
  `images` 1x3x{s}x{s}; output 1x(4+{m['num_classes']})xN boxes (cx, cy, w, h, class scores), NMS not included.
- **OpenVINO IR**: `openvino.Core().compile_model("model_openvino_model/best.xml", "CPU")` (or `"GPU"`/`"NPU"`
  on Intel hardware); same input and output as ONNX. The latency above is f32; on CPUs with BF16 the plugin
  defaults to bf16 (faster, boxes within a fraction of a pixel): pass `{{"INFERENCE_PRECISION_HINT": "f32"}}`
  for exactly what `best.pt` computes.
- **TorchScript**: `torch.jit.load("model.torchscript")`, call it on a 1x3x{s}x{s} tensor; same output.

## TensorRT (Jetson and other NVIDIA targets): build the engine on the device

There is no `.engine` file here on purpose. A TensorRT engine is compiled for one GPU architecture and one
TensorRT/CUDA version; an engine built on the training GPU (a data-centre card, x86) will not load on a
Jetson (ARM, a different GPU and JetPack's TensorRT). Build it on the target itself, once per device type:

```bash
# on the Jetson (JetPack ships trtexec under /usr/src/tensorrt/bin)
/usr/src/tensorrt/bin/trtexec --onnx=model.onnx --saveEngine=model.engine --fp16
# or, with Ultralytics installed on the device:
yolo export model=best.pt format=engine imgsz={s} half=True device=0
```

Then load `model.engine` with TensorRT, or `YOLO("model.engine")`. Rebuild after every JetPack upgrade.
"""


def _thresholds_md(rc: dict) -> str:
    overall = rc.get("overall")
    if not overall:
        return "## Confidence threshold\n\nNot measured for this model (no val predictions)."
    rows = "\n".join(f"| {n} | {v['conf']:.3f} | {v['f1']:.3f} |" for n, v in sorted(rc.get("per_class", {}).items()))
    return f"""## Confidence threshold

Recommended: keep detections with score >= **{overall['conf']:.3f}** (F1 {overall['f1']:.3f} on the val split: the
F1-optimal point of the validator's curves, mean over classes). Per class, where one class should be cut
differently:

| class | confidence | F1 at it |
|---|---|---|
{rows}

Lower it where a miss costs more than a false alarm; raise it for the opposite. Values in `model.json`
(`recommended_confidence`)."""
