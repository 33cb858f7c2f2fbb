"""Ultralytics without a network: no hub, telemetry, update checks, font or AMP-check downloads."""

from __future__ import annotations

import os
from pathlib import Path


def make_offline(config_dir: Path) -> None:
    """Before the first `import ultralytics`: no hub, no telemetry, no update checks, no downloads."""
    os.environ["YOLO_OFFLINE"] = "1"
    # check_requirements would otherwise pip-install what an export or DDP launch lacks; the image pins it all
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("MPLCONFIGDIR", str(config_dir / "matplotlib"))
    for k in ("WANDB_MODE",):
        os.environ.pop(k, None)


def patch_ultralytics(settings_dirs: Path) -> None:
    """After import: settings without integrations, and no font / AMP-check downloads."""
    import ultralytics.utils as uu
    import ultralytics.utils.checks as checks
    from ultralytics import settings

    integrations = {k: False for k in ("sync", "hub", "clearml", "comet", "dvc", "mlflow", "neptune", "raytune",
                                       "tensorboard", "wandb", "vscode_msg", "openvino_msg") if k in settings}
    dirs = {"runs_dir": str(settings_dirs / "runs"), "weights_dir": str(settings_dirs / "weights"),
            "datasets_dir": str(settings_dirs / "datasets")}
    if any(settings.get(k) != v for k, v in {**integrations, **dirs}.items()):
        settings.update({**integrations, **dirs})
    uu.ONLINE = checks.ONLINE = False
    uu.AUTOINSTALL = checks.AUTOINSTALL = False  # in case Ultralytics was imported before make_offline

    def offline_font(font: str = "Arial.ttf"):
        """Ultralytics' check_font downloads a missing font; the image bakes fonts into YOLO_CONFIG_DIR."""
        name = Path(font).name
        for d in (uu.USER_CONFIG_DIR, Path(os.environ.get("YOLO_CONFIG_DIR", "/nonexistent"))):
            if (Path(d) / name).exists():
                return Path(d) / name
        from matplotlib import font_manager

        return font_manager.findfont("DejaVu Sans")  # ships with matplotlib: plots still render

    def offline_check_amp(model) -> bool:
        """The stock check downloads yolo26n.pt; keep only its GPU blocklist."""
        import re

        import torch

        dev = next(model.parameters()).device
        if dev.type != "cuda":
            return False
        name = torch.cuda.get_device_name(dev)
        return not re.search(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|"
                             r"t2000|k40m)", name, re.IGNORECASE)

    import ultralytics.data.utils as du
    import ultralytics.engine.trainer as tr
    import ultralytics.utils.plotting as up

    for mod in (checks, du, up):
        mod.check_font = offline_font
    tr.check_amp = offline_check_amp
