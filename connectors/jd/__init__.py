"""JD Open Platform (京东开放平台/JOS, `jingdong.*`) for POP shops: orders, SKU stock/price,
shelving, shipment, tokens."""

from connectors.jd.connector import JdConnector

__all__ = ["JdConnector"]
