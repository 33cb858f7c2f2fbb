"""Retrain and retry: a run started again on purpose, with an id that says so.

    <root>-t<n>   retrain: a validated dataset version trained again (`yoloops train`), n = 1..99
    <root>-y<n>   retry: a finished run re-run with its own inputs (`yoloops run retry`), n = 1..99

`<root>` is the original run id without its own -t/-y/-r<n> suffix (-r<n>: a release re-published after
ImageNotFound), so a retry of a retrain is `<root>-y<n>`, never a growing chain. Root ids leave
run_ids.RETRY_SUFFIX_RESERVE (4) characters free, so `<root>-t99` still fits MAX_RUN_ID_LENGTH and the job
name `<run id>-<stack code>-a<n>` SageMaker's 63. The execution input is a RunRequest with trigger source
`retrain`/`retry`, trigger.ref the original run id, and `overrides` (docs/architecture.md "Retrain and
retry"); ValidateDataset checks both here, so `aws stepfunctions start-execution` is held to the same rules.
"""

from __future__ import annotations

import re
from typing import Any

from yoloops_core.hyperparameters import check_overrides
from yoloops_core.models import InvalidInput, RunRequest

SUFFIXES = {"retrain": "t", "retry": "y"}
MAX_RERUNS = 99
_SUFFIX = re.compile(r"-[tyr]\d{1,2}$")


def root_run_id(run_id: str) -> str:
    """The run id without one -t<n> / -y<n> / -r<n> suffix (hash segments are 8 characters, never these)."""
    return _SUFFIX.sub("", run_id)


def rerun_id(original: str, kind: str, n: int) -> str:
    if kind not in SUFFIXES:
        raise ValueError(f"unknown rerun kind {kind!r}")
    if not 1 <= n <= MAX_RERUNS:
        raise ValueError(f"rerun number {n} is not 1..{MAX_RERUNS}")
    return f"{root_run_id(original)}-{SUFFIXES[kind]}{n}"


def rerun_ids(original: str, kind: str) -> list[str]:
    """The ids a rerun of `original` may take, in the order to try them (the first free one is used)."""
    return [rerun_id(original, kind, n) for n in range(1, MAX_RERUNS + 1)]


def check_request(run_id: str, request: RunRequest) -> dict[str, str]:
    """The run's hyperparameters: the request's, then its overrides checked against the allow-list.

    A retrain/retry must be named `<root of trigger.ref>-t<n>` / `-y<n>`: the name says what the run is
    however it was started."""
    source = request.trigger.source
    if source in SUFFIXES:
        expected = re.compile(rf"{re.escape(root_run_id(request.trigger.ref))}-{SUFFIXES[source]}(\d{{1,2}})")
        m = expected.fullmatch(run_id)
        if not m or not 1 <= int(m.group(1)) <= MAX_RERUNS:
            raise InvalidInput(f"a {source} of {request.trigger.ref} must be named "
                               f"{rerun_id(request.trigger.ref, source, 1)} (or -{SUFFIXES[source]}2 ... "
                               f"-{SUFFIXES[source]}{MAX_RERUNS}), not {run_id!r}")
    return {**request.hyperparameters, **check_overrides(dict(request.overrides))}


def overrides_note(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "none"


def run_settings(settings: Any, run: Any) -> Any:
    """The stack's settings as one run sees them: its own instance type (`yoloops train --instance-type`,
    RunRequest.instance_type) priced by the gate and put in its plan; every other setting the stack's."""
    itype = getattr(run, "instance_type", None)
    return settings.model_copy(update={"instance_type": itype}) if itype else settings
