"""The out-of-tree example (examples/erpsync-youzan): installed into a throw-away target it
is found through its entry point, with its distribution as origin, and passes the suite."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]  # the run_python fixture
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "erpsync-youzan"

pytestmark = pytest.mark.slow


def test_the_example_is_discovered_from_its_distribution_and_passes_the_suite(
        install: Callable[[Path], Path], run_python: Run) -> None:
    site = install(EXAMPLE)
    found = run_python(["-c", (
        "import inspect; from core.plugins import Registry; "
        "r = Registry.discover(); y = r.plugins['youzan']; "
        "print(y.origin); print(inspect.getfile(y.plugin)); "
        "print(sorted(c.value for c in y.plugin.capabilities)); "
        "print([b.name for b in r.broken if b.name == 'youzan'])")], [site])
    origin, source, capabilities, broken = found.stdout.strip().splitlines()[-4:]
    assert origin == "erpsync-youzan 0.1.0", found.stderr
    assert source.startswith(str(site))
    assert "orders.push" in capabilities and "logistics.partial_ship" in capabilities
    assert broken == "[]"

    tests = site.parent / "build" / "erpsync-youzan" / "tests"
    result = run_python(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", str(tests)],
                        [site])
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
