"""What every command module shares: global options (State), error handling and JSON output.

The bottom of the CLI package: command modules import it, it imports no command module.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.markup import escape

from yoloops.client import CliError, Stack, StackNotRunning, resolve_stack
from yoloops.views import err

F = TypeVar("F", bound=Callable[..., Any])
FINISHED_OK = ("PROMOTED", "KEPT")
JSON_HELP = "Print the result as JSON."


class State:
    """Global options; the stack is looked up only by commands that need one."""

    def __init__(self, local: str | None, stack: str | None, region: str | None):
        self.local, self.stack_name, self.region = local, stack, region
        self._stack: Stack | None = None

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            self._stack = Stack(resolve_stack(self.local, self.stack_name, self.region))
        return self._stack


def state_of(ctx: typer.Context) -> State:
    return ctx.find_object(State) or State(None, None, None)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print("[bold red]error:[/] " + escape(message))
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn the errors a user can act on into one clear line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except EndpointConnectionError as exc:
            msg = StackNotRunning(f"cannot reach {exc.kwargs.get('endpoint_url')}: if this is the local stack, "
                                  "start it with `yoloops local up`")
            raise fail(str(msg)) from None
        except NoCredentialsError:
            raise fail("no AWS credentials found (or use the local stack: `yoloops --local ...`)") from None
        except ClientError as exc:
            e = exc.response.get("Error", {})
            raise fail(f"AWS {exc.operation_name}: {e.get('Code')}: {e.get('Message')}") from None

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
