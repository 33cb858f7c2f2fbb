"""`yoloops_mode=probe`: report the host instead of training (`yoloops image probe` runs this on a real
instance type and reads <base>/model/probe.json back from model.tar.gz).

It never fails on a missing GPU: saying so is its job (`gpu_problem` is what a training job would fail with).
"""

from __future__ import annotations

import json
import time

from . import common, host
from .common import emit, log
from .config import Paths

PROBE_FILE = "probe.json"


def host_paths(paths: Paths) -> list:
    """The folders whose free space matters: checkpoints, model, the input channels, scratch."""
    return [paths.checkpoints, paths.model, paths.base / "input" / "data", paths.work]


def run_probe(paths: Paths, **collect_kw) -> dict:
    facts = host.collect(host_paths(paths), **collect_kw)
    report = {
        **facts.as_dict(),
        "gpu_problem": host.gpu_problem(facts),
        "checkpoints_mount_point": any(d.mount_point for d in facts.disks if d.path == str(paths.checkpoints)),
        "container_started_at": common.process_start(),  # the CLI subtracts the Training transition: pull time
        "reported_at": time.time(),
    }
    for line in facts.lines():
        log(line)
    paths.model.mkdir(parents=True, exist_ok=True)
    (paths.model / PROBE_FILE).write_text(json.dumps(report, indent=2))
    emit("yoloops-probe " + json.dumps({k: report[k] for k in ("driver_version", "torch_cuda", "cuda_available",
                                                                 "gpu_problem")}))
    return report
