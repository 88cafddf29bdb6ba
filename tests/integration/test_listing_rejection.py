"""A platform refusal, end to end: Taobao's review refuses a title with a banned word that
the local list does not know; the refusal is stored on the listing with Taobao's own reason
and alerted, `listings validate` and `listings plan` show it, the operator fixes the title
and pushes again, and the listing is created, the refusal cleared and the alert resolved.

The Taobao sandbox has no banned-word review of its own (and connectors/taobao is not this
feature's to change), so the refusal comes from a subclass defined here that answers in
TOP's business-refusal shape: code 15 with a sub_code and sub_msg."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select

from connectors.taobao.sandbox import TaobaoSandbox, TopFault
from core.alerts import open_alerts
from core.catalog import ProductSpec, SkuSpec, upsert_product
from core.clock import ManualClock
from core.db import transaction
from core.listing_plan import plan_listings, push_listings, validate_listings
from core.model import Listing, OutboxTask
from core.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_SUB_CODE = "isv.item-add-service-error:ITEM_TITLE_FORBIDDEN_WORD"  # assumed name


class ReviewingTaobaoSandbox(TaobaoSandbox):
    """Refuses item.add / item.update when the title holds a word of Taobao's own list."""

    forbidden = ("特效",)

    def _review(self, params: Mapping[str, str]) -> None:
        for word in self.forbidden:
            if word in params.get("title", ""):
                raise TopFault(15, "Remote service error", FORBIDDEN_SUB_CODE,
                               f"商品标题中含有违禁词“{word}”，请修改后重新发布")

    def _item_add(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._review(params)
        return super()._item_add(params)

    def _item_update(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._review(params)
        return super()._item_update(params)


def mug(tmp_path: Path, title: str) -> ProductSpec:
    first = tmp_path / "main.png"
    Image.new("RGB", (800, 800), "white").save(first)
    return ProductSpec(
        merchant_code="MUG", title=title,
        skus=(SkuSpec("MUG-W", 3900, {"颜色": "白色"}), SkuSpec("MUG-B", 4900, {"颜色": "黑色"})),
        categories={"taobao": "121412004"},
        attributes={"品牌": "3246379", "材质": "3323086", "容量": "3267945", "风格": "3226292"},
        images=(str(first),), description="釉下彩陶瓷马克杯，可用洗碗机")


async def set_catalogue(rt: Runtime, spec: ProductSpec) -> None:
    async with transaction(rt.sessions) as session:
        await upsert_product(session, spec, rt.now())


async def cli(config: Path, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", *args, "--config", str(config), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"})
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_refused_listing_is_shown_fixed_and_pushed_again(
        tmp_path: Path, sqlite_url: str, clock: ManualClock, make_runtime: Any) -> None:
    sandbox = ReviewingTaobaoSandbox(clock=clock)
    rt = await make_runtime(sqlite_url, {"tb": sandbox})
    await set_catalogue(rt, mug(tmp_path, "特效陶瓷马克杯 办公室咖啡杯"))
    assert await validate_listings(rt) == []  # the local list does not know 特效

    report = await push_listings(rt)
    assert report.stats is not None and report.stats.failed == 1
    assert sandbox.items == {}
    async with rt.sessions() as session:
        rows = (await session.scalars(select(Listing).order_by(Listing.id))).all()
        assert [r.platform_item_id for r in rows] == ["", ""]  # not on the platform yet
        assert {r.rejection for r in rows} == {
            f"listing: taobao.item.add: 15 Remote service error ({FORBIDDEN_SUB_CODE}: "
            "商品标题中含有违禁词“特效”，请修改后重新发布)"}
        [alert] = await open_alerts(session, "listing_rejected")
        assert alert.subject == "tb:MUG" and "违禁词“特效”" in alert.message
        assert await session.scalar(select(OutboxTask.state).where(
            OutboxTask.kind == "listing")) == "failed"

    [entry] = await validate_listings(rt)
    assert entry.problems == () and "违禁词“特效”" in entry.rejection
    [plan] = await plan_listings(rt)
    assert [(a.action, "违禁词“特效”" in a.rejection) for a in plan.actions] == [("create", True)]
    config = tmp_path / "erpsync.toml"
    code, out = await cli(config, "listings", "validate")
    assert code == 1, out
    assert "REJECTED_BY_PLATFORM" in out and "违禁词“特效”" in out
    code, out = await cli(config, "listings", "plan", "--shop", "tb")
    assert code == 0, out
    assert "create MUG" in out and "refused by taobao" in out and "违禁词“特效”" in out

    # the operator fixes the title and pushes again
    await set_catalogue(rt, mug(tmp_path, "陶瓷马克杯 办公室咖啡杯"))
    report = await push_listings(rt)
    assert report.stats is not None and (report.stats.sent, report.stats.failed) == (1, 0)
    [item] = sandbox.items.values()
    assert item.title == "陶瓷马克杯 办公室咖啡杯"
    async with rt.sessions() as session:
        rows = (await session.scalars(select(Listing).order_by(Listing.id))).all()
        assert [(r.platform_item_id, r.rejection) for r in rows] == [(item.item_id, "")] * 2
        assert await open_alerts(session, "listing_rejected") == []
        assert await open_alerts(session, "push_failed") == []
    assert await validate_listings(rt) == []
    assert [a for p in await plan_listings(rt) for a in p.actions] == []
    code, out = await cli(config, "listings", "validate")
    assert code == 0 and "every product passes" in out

    # an update refused the same way keeps the platform's title and the listing's reason
    await set_catalogue(rt, mug(tmp_path, "特效陶瓷马克杯 大容量"))
    await push_listings(rt)
    assert item.title == "陶瓷马克杯 办公室咖啡杯"
    [entry] = await validate_listings(rt)
    assert entry.rejection.startswith("listing: taobao.item.update: 15")
    await set_catalogue(rt, mug(tmp_path, "陶瓷马克杯 大容量"))
    await push_listings(rt)
    assert item.title == "陶瓷马克杯 大容量"
    assert await validate_listings(rt) == []
    async with rt.sessions() as session:
        assert await open_alerts(session, "listing_rejected") == []
