"""The one place boto3 clients are made: lazily, once per process.

`AWS_ENDPOINT_URL` (honoured by botocore itself) points every client at the local stack.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    import boto3  # imported on first use so handlers that never call AWS stay cheap to import
    from botocore.config import Config

    # The dataset validator reads label files with a thread pool; botocore's default pool is 10.
    return boto3.session.Session().client(service, config=Config(max_pool_connections=32))


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints or credentials)."""
    client.cache_clear()
