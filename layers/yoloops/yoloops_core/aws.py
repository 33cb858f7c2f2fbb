"""The one place boto3 clients are made: lazily, once per process.

`AWS_ENDPOINT_URL` (honoured by botocore itself) points every client at the local stack.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str, region: str | None = None) -> Any:
    """`region` only for services with fixed endpoints elsewhere (the Price List API); default: the function's."""
    import boto3  # imported on first use so handlers that never call AWS stay cheap to import
    from botocore.config import Config

    # The dataset validator reads label files with a thread pool; botocore's default pool is 10.
    return boto3.session.Session().client(service, region_name=region, config=Config(max_pool_connections=32))


@cache
def _secrets_provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=client("secretsmanager"))


def secret(secret_id: str, max_age: int = 300) -> str:
    """A secret's string from Secrets Manager, cached `max_age` seconds per container (warm starts
    skip the call; a rotated value is seen within that time). An empty secret is an error."""
    value = _secrets_provider().get(secret_id, max_age=max_age)
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode()
    if not value:
        raise RuntimeError(f"secret {secret_id} is empty")
    return value


def reset_clients() -> None:
    """Forget cached clients and secrets (tests and the local stack, when endpoints or values change)."""
    client.cache_clear()
    _secrets_provider.cache_clear()
