"""The suite catches a real bug and says what it is: a Taobao connector whose order paging
stops one page early fails with a plain message, run the way an author runs it — pytest in a
project that does not set asyncio_mode = "auto"."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]  # the run_python fixture

pytestmark = pytest.mark.slow

BROKEN = '''
from connectors.taobao.client import field, unwrap_list
from connectors.taobao.connector import TaobaoConnector
from core.paging import page_count
from core.testing.contract import ConnectorContract


class LastPageDropped(TaobaoConnector):
    """Pages forwards and stops one page early: the classic off-by-one."""

    async def _modified_tids(self, start, end):
        api = "taobao.trades.sold.increment.get"
        params = {"fields": "tid,modified", "start_modified": start, "end_modified": end,
                  "page_size": self.limits.page_size}
        first = await self.client.call(api, {**params, "page_no": 1})
        pages = page_count(int(first.get("total_results", 0)), self.limits.page_size)
        for page_no in range(1, max(pages, 2)):
            page = first if page_no == 1 else await self.client.call(
                api, {**params, "page_no": page_no})
            for trade in unwrap_list(page, "trades", "trade"):
                yield str(field(trade, "tid"))


class TestLastPageDropped(ConnectorContract):
    connector_class = LastPageDropped
'''


def test_a_connector_that_drops_the_last_page_fails_with_a_plain_message(
        tmp_path: Path, run_python: Run) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_broken.py").write_text(BROKEN)
    result = run_python(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf",
                         str(project / "test_broken.py")])
    out = result.stdout
    assert result.returncode == 1, out
    assert re.search(r"iter_orders yielded 100 of 101 orders modified in \[.+\): the last "
                     r"page was not read", out), out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "test_iter_orders_pages_to_the_end" in failed[0], out
    assert re.search(r"1 failed, \d+ passed", out), out
