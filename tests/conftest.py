"""Shared fixtures. Pipeline runs cost tens of seconds, so end-to-end tests share
session-scoped runs instead of starting their own."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_ROOT = os.path.join(REPO_ROOT, "data", "penguins")
SCHEMA_PATH = os.path.join(REPO_ROOT, "schema", "schema.pbtxt")


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO_ROOT
