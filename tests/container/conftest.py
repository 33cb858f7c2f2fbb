"""Fixtures for the training container tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The image runs /opt/ml/code/train.py, whose folder Python puts first on sys.path; do the same here so the
# tests import the very package the image ships.
TRAINING_CONTAINER = str(Path(__file__).resolve().parents[2] / "training_container")
if TRAINING_CONTAINER not in sys.path:
    sys.path.insert(0, TRAINING_CONTAINER)

from container_helpers import load_train_module  # noqa: E402


@pytest.fixture(scope="session")
def train_module():
    return load_train_module()
