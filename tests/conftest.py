"""Shared pytest fixtures: differential-case counting and simulator discovery."""

import collections

import pytest

_DIFF_PREFIX = "diff_cases:"


@pytest.fixture
def diff_cases(record_property):
    """Count differential cases: ``diff_cases("conv2d", n)`` after comparing ``n`` cases.

    Counts travel in the test report (so they survive pytest-xdist) and are summed
    per kernel at the end of the run.
    """

    def count(kernel, n=1):
        record_property(_DIFF_PREFIX + kernel, int(n))

    return count


def pytest_terminal_summary(terminalreporter):
    totals = collections.Counter()
    tests = collections.Counter()
    for report in terminalreporter.stats.get("passed", []):
        if getattr(report, "when", None) != "call":
            continue
        for name, value in getattr(report, "user_properties", []):
            if name.startswith(_DIFF_PREFIX):
                kernel = name[len(_DIFF_PREFIX) :]
                totals[kernel] += value
                tests[kernel] += 1
    if totals:
        terminalreporter.section("differential cases per kernel or unit (passed tests)")
        for kernel in sorted(totals):
            terminalreporter.write_line(
                f"{kernel:<28} {totals[kernel]:>9} cases ({tests[kernel]} comparisons)"
            )


@pytest.fixture(params=["verilator", "icarus"])
def simulator(request):
    """Name of an HDL simulator that cocotb can use: each RTL test runs once per simulator.

    Skips (with the reason discovery gave) only when that simulator is missing here.
    """
    from bamboo.sim.harness import find_simulators

    info = find_simulators()[request.param]
    if not info.available:
        pytest.skip(f"{request.param} unavailable: {info.reason}")
    return request.param
