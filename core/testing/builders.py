"""Builders for canonical records, so tests state only what matters to them."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.clock import BEIJING
from core.records import Address, LineStatus, OrderLineRecord, OrderRecord, OrderStatus

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=BEIJING)


def line(code: str, quantity: int = 1, *, line_id: str | None = None, price_fen: int = 9900,
         status: LineStatus = LineStatus.OPEN, presale_ship_by: datetime | None = None
         ) -> OrderLineRecord:
    return OrderLineRecord(
        platform_line_id=line_id or f"L-{code}", platform_item_id=f"I-{code}",
        platform_sku_id=f"S-{code}", merchant_code=code, title=code, quantity=quantity,
        unit_price_fen=price_fen, paid_fen=price_fen * quantity, status=status,
        presale_ship_by=presale_ship_by)


def order(order_id: str, *lines: OrderLineRecord, status: OrderStatus = OrderStatus.PAID,
          modified: datetime | None = None, paid_fen: int | None = None,
          province: str = "浙江省", detail: str = "文三路 100 号", remark: str = "",
          platform_status: str | None = None) -> OrderRecord:
    moment = modified or T0
    total = sum(item.paid_fen for item in lines)
    return OrderRecord(
        platform_order_id=order_id, status=status, platform_status=platform_status or status.value,
        created_at=moment - timedelta(minutes=1), modified_at=moment,
        paid_at=None if status == OrderStatus.UNPAID else moment, total_fen=total,
        paid_fen=total if paid_fen is None else paid_fen, post_fee_fen=0,
        address=Address(province, "杭州市", "西湖区", detail), lines=tuple(lines),
        buyer_remark=remark)
