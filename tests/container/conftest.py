"""Fixtures for the training container tests."""

from __future__ import annotations

import pytest
from container_helpers import load_train_module


@pytest.fixture(scope="session")
def train_module():
    return load_train_module()
