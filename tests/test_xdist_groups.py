"""The suite's own set-up: tests/conftest.py's pytest_collection_modifyitems keeps an xdist_group on one worker."""

import pytest


@pytest.mark.xdist_group("xdist_groups_reach_the_scheduler")
def test_an_xdist_groups_tests_carry_the_group_that_the_scheduler_reads(request):
    """Under pyproject's `--dist loadgroup` the scheduler sends the tests of one group to one worker by the
    "@GROUP" suffix of their node ids; with pytest 9.2 and pytest-xdist 3.8 it was lost, and every group's
    costly fixture (a quickstart run, a LoRA run, a tokenizer oracle) was built on both workers."""
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not run under pytest-xdist's --dist loadgroup (-n 0, or another --dist)")
    assert request.node.nodeid.endswith("@xdist_groups_reach_the_scheduler")
