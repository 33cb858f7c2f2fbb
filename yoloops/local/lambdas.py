"""In-process Lambda execution for the local stack.

moto registers functions but can only run their code in Docker. Here a function's `app.lambda_handler`
runs inside this process with that function's own environment (from the deployed template), and an
exception becomes the same error payload real Lambda returns, so Step Functions Catch/Retry see
`Error` = exception class name and `Cause` = `{"errorMessage", "errorType", "requestId", "stackTrace"}`.

The process environment is shared, so invocations are serialized by a lock around the env swap.
Asynchronous sources (S3 notifications, SNS, EventBridge) go through a queue and a worker thread, as
in AWS: a handler that publishes to SNS must not wait for the subscriber (it would deadlock on the lock).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger("yoloops.local.lambdas")

# Settings a function may read; a variable not in THAT function's environment is hidden while it runs.
_HIDDEN_WHEN_ABSENT_PREFIXES = ("POWERTOOLS_",)


@dataclass
class FunctionSpec:
    """One deployed function: where its code is and the environment the template gives it."""

    name: str  # physical function name (moto)
    logical_id: str
    code_dir: Path
    handler: str = "app.lambda_handler"
    environment: dict[str, str] = field(default_factory=dict)
    timeout_s: int = 30
    memory_mb: int = 256
    arn: str = ""
    dead_letter_arn: str | None = None  # DeadLetterConfig.TargetArn (SQS) for failed async invocations
    max_async_retries: int = 2  # EventInvokeConfig.MaximumRetryAttempts (AWS default 2)


@dataclass
class Invocation:
    """What the local stack records for every invocation (tests and `yoloops local` inspect these)."""

    function: str
    source: str  # "sync" (Step Functions, function URL, direct) or "s3", "sns", "events"
    event: Any
    result: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0


class LambdaContext:
    """The subset of the Lambda context object handlers and powertools use."""

    def __init__(self, spec: FunctionSpec):
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + spec.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def error_payload(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The payload real Lambda (python runtime) returns for an unhandled exception."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class LambdaRuntime:
    """Registry of deployed functions + the in-process invoker (sync and async)."""

    def __init__(self, base_env: dict[str, str] | None = None,
                 async_retry_delays: tuple[float, ...] = (0.2, 0.5)):
        self.functions: dict[str, FunctionSpec] = {}
        # AWS waits ~1 and ~2 minutes between async retries; locally the order matters, not the wait.
        self.async_retry_delays = async_retry_delays
        self.dead_letter: Callable[[str, Any, dict[str, Any]], None] | None = None
        self._gates: list[tuple[Callable[[FunctionSpec, Any], bool], threading.Event]] = []
        self.base_env = dict(base_env or {})
        self.invocations: list[Invocation] = []
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.RLock()
        self._queue: queue.Queue[tuple[str, Any, str] | None] = queue.Queue()
        self._pending = 0
        self._pending_cv = threading.Condition()
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------ registry
    def register(self, spec: FunctionSpec) -> None:
        self.functions[spec.name] = spec

    def resolve(self, name_or_arn: str) -> FunctionSpec:
        name = name_or_arn
        if name.startswith("arn:"):
            parts = name.split(":")
            name = parts[6] if len(parts) >= 7 else name
        if name in self.functions:
            return self.functions[name]
        for spec in self.functions.values():
            if name in (spec.logical_id, spec.arn):
                return spec
        raise KeyError(f"function {name_or_arn!r} is not deployed in the local stack")

    def cold_start(self) -> None:
        """A new deployment: every function starts cold (handler modules and the per-container caches of
        yoloops_core are rebuilt), as on AWS, where new code means new execution environments. Without it a
        second stack in one process kept the first one's webhook wiring (its secret ARN, its endpoint)."""
        from yoloops_core import github
        from yoloops_core.aws import reset_clients
        from yoloops_core.config import get_settings

        with self._lock:
            self._modules.clear()
            reset_clients()
            get_settings.cache_clear()
            github.default_deps.cache_clear()

    # ------------------------------------------------------------ invocation
    def _load(self, spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        module_file, _, attr = spec.handler.rpartition(".")
        key = f"{spec.code_dir}:{module_file}"
        module = self._modules.get(key)
        if module is None:
            path = spec.code_dir / (module_file.replace(".", "/") + ".py")
            # Each function's app.py gets its own module name: they are all called "app".
            mod_name = f"yoloops_local_fn_{spec.code_dir.name}_{module_file.replace('.', '_')}"
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise FileNotFoundError(f"handler module not found: {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            loader_spec.loader.exec_module(module)
            self._modules[key] = module
        return getattr(module, attr)

    def _function_env(self, spec: FunctionSpec) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            }
        )
        env.update(spec.environment)
        return env

    def invoke(self, name_or_arn: str, event: Any, source: str = "sync") -> tuple[Any, dict[str, Any] | None]:
        """Run the handler; returns (result, None) or (None, lambda error payload)."""
        spec = self.resolve(name_or_arn)
        for matches, gate in list(self._gates):
            if matches(spec, event):
                gate.wait()  # held by a test (outside the lock, so everything else keeps running)
        from yoloops_core.config import get_settings

        record = Invocation(function=spec.name, source=source, event=event)
        with self._lock:
            env = self._function_env(spec)
            settings_keys = {n.upper() for n in _settings_fields()}
            saved = {k: os.environ.get(k) for k in set(env) | settings_keys}
            for key in saved:
                if key not in env and (key in settings_keys or key.startswith(_HIDDEN_WHEN_ABSENT_PREFIXES)):
                    os.environ.pop(key, None)
            os.environ.update(env)
            get_settings.cache_clear()
            context = LambdaContext(spec)
            started = time.perf_counter()
            try:
                handler = self._load(spec)
                # Events cross a JSON boundary in AWS: handlers must never share objects with the caller.
                result = handler(json.loads(json.dumps(event)), context)
                record.result = json.loads(json.dumps(result)) if result is not None else None
            except Exception as exc:  # the Lambda runtime turns any exception into an error payload
                record.error = error_payload(exc, context.aws_request_id)
                log.info("function %s raised %s: %s", spec.name, type(exc).__name__, exc)
            finally:
                record.duration_ms = (time.perf_counter() - started) * 1000
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                get_settings.cache_clear()
        self.invocations.append(record)
        return record.result, record.error

    def hold(self, matches: Callable[[FunctionSpec, Any], bool]) -> threading.Event:
        """Hold every invocation `matches(spec, event)` selects until the returned event is set.

        Tests use it to force interleavings (e.g. one run's Promote after another run's), which is
        how races like two promotions of one dataset are made deterministic.
        """
        gate = threading.Event()
        self._gates.append((matches, gate))
        return gate

    def release_all(self) -> None:
        for _, gate in self._gates:
            gate.set()
        self._gates.clear()

    # ------------------------------------------------------------ async sources
    def invoke_async(self, name_or_arn: str, event: Any, source: str) -> None:
        with self._pending_cv:
            self._pending += 1
        self._ensure_worker()
        self._queue.put((name_or_arn, event, source))

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="local-lambda-async", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            name, event, source = item
            try:
                self._run_async(name, event, source)
            except Exception:
                log.exception("async invocation of %s could not run", name)
            finally:
                with self._pending_cv:
                    self._pending -= 1
                    self._pending_cv.notify_all()

    def _run_async(self, name: str, event: Any, source: str) -> None:
        """One async event: the first try + MaximumRetryAttempts retries, then the dead-letter queue."""
        spec = self.resolve(name)
        error: dict[str, Any] | None = None
        for attempt in range(spec.max_async_retries + 1):
            if attempt:
                time.sleep(self.async_retry_delays[min(attempt, len(self.async_retry_delays)) - 1])
            _, error = self.invoke(name, event, source=source)
            if error is None:
                return
            log.warning("async invocation of %s failed (try %d): %s", spec.name, attempt + 1, error["errorMessage"])
        if spec.dead_letter_arn and self.dead_letter is not None:
            self.dead_letter(spec.dead_letter_arn, event, error or {})

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued async invocation has run (tests, before asserting on effects)."""
        deadline = time.monotonic() + timeout
        with self._pending_cv:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._pending_cv.wait(left)
        return True

    def stop(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=5)


def _settings_fields() -> list[str]:
    from yoloops_core.config import Settings

    return list(Settings.model_fields)
