"""Shared pytest configuration: Hypothesis profiles and the ``--slow`` flag.

Hypothesis profiles
-------------------
``ci`` (default): derandomized, modest ``max_examples``, no deadline (numerics vary in time).
``dev``: random, 200 examples.  ``thorough``: random, 2000 examples.
Select one with ``HYPOTHESIS_PROFILE=dev pytest``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: The variables through which torchrun (and submitit's export) tell a process to join a process group.
DISTRIBUTED_ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _no_leaked_process_group_environment():
    """Fail the test that leaves torchrun's variables set (and restore them): a leaked ``RANK``/``WORLD_SIZE``
    makes every later ``mvm train`` of the session wait forever for a process group that never forms."""
    before = {name: os.environ.get(name) for name in DISTRIBUTED_ENVIRONMENT}
    yield
    after = {name: os.environ.get(name) for name in DISTRIBUTED_ENVIRONMENT}
    if after != before:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        changed = {name: after[name] for name in DISTRIBUTED_ENVIRONMENT if after[name] != before[name]}
        pytest.fail(f"the test left process-group variables in os.environ: {changed}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with `pytest --slow` or `make test SLOW=1`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
