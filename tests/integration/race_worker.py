"""One racing process: waits for "go" on stdin, then ingests its orders for the scarce SKU
one transaction each, as concurrent webhooks would. Exits non-zero if any error escapes."""

from __future__ import annotations

import asyncio
import sys

from core.db import create_engine, session_factory, transaction
from core.inventory import StockPool
from core.orders import OrderBook
from core.publishing import Publisher
from core.review import ReviewRules
from core.testing.builders import T0, line, order


async def main(url: str, shop_id: int, code: str, order_ids: list[str]) -> None:
    engine = create_engine(url, pool_size=2) if not url.startswith("sqlite") else create_engine(url)
    sessions = session_factory(engine)
    pool = StockPool(("MAIN",))
    book = OrderBook(pool, Publisher(pool, "strict"), ReviewRules())
    sys.stdin.readline()  # the starting gun
    for order_id in order_ids:
        record = order(order_id, line(code, 1, line_id=f"{order_id}-1", price_fen=1000))
        async with transaction(sessions) as session:
            await book.ingest(session, shop_id, [record], source="push", now=T0)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")))
