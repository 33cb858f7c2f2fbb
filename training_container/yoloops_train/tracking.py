"""The optional W&B mirror of a run (the run id lives with the checkpoints, so a restarted job continues it)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from .common import log
from .resume import atomic_write


class WandbRun:
    """Optional W&B mirror; every failure is a warning, never a training failure."""

    def __init__(self, ckpt_dir: Path, project: str, config: dict):
        self.run = None
        arn = os.environ.get("WANDB_SECRET_ARN")
        if not arn and not os.environ.get("WANDB_API_KEY"):
            return
        try:
            # the job's secret (WANDB_SECRET_ARN) or, for local runs, W&B's own WANDB_API_KEY
            key = self._read_key(arn) if arn else os.environ["WANDB_API_KEY"]
            import wandb  # optional in the image

            id_file = ckpt_dir / "wandb_run_id"
            run_id = (id_file.read_text().strip() if id_file.exists() else "") or wandb.util.generate_id()
            id_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(id_file, run_id)
            os.environ["WANDB_API_KEY"] = key
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", project), id=run_id, resume="allow",
                                  config=config, settings=wandb.Settings(init_timeout=60))
            log(f"W&B run {run_id} (resumes with the checkpoint dir)")
        except Exception as e:
            log(f"WARNING W&B disabled, training continues: {type(e).__name__}: {e}")
            self.run = None

    @staticmethod
    def _read_key(arn: str) -> str:
        import boto3

        secret = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            obj = json.loads(secret)
            return str(obj.get("api_key") or obj.get("WANDB_API_KEY") or obj.get("key"))
        return secret.strip()

    def log(self, data: dict, step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log(data, step=step)
        except Exception as e:
            log(f"WARNING W&B log failed: {e}")

    def finish(self, summary: dict | None = None) -> None:
        if self.run is None:
            return
        try:
            if summary:
                self.run.summary.update(summary)
            self.run.finish()
        except Exception as e:
            log(f"WARNING W&B finish failed: {e}")
