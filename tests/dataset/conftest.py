"""Fixtures shared by the dataset tests (helpers live in ds_helpers.py)."""

from __future__ import annotations

import boto3
import pytest
from ds_helpers import BUCKET
from moto import mock_aws


@pytest.fixture
def s3():
    """A moto S3 client with the datasets bucket."""
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client
