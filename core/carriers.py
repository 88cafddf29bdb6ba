"""The canonical carrier list. Connectors map these codes to their platform's codes in one
table each (`CarrierTable`); tracking-number formats let imports refuse a waybill that cannot
belong to the carrier named next to it."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Carrier:
    code: str
    name: str
    tracking_format: re.Pattern[str]
    domestic: bool = True


def _c(code: str, name: str, pattern: str, domestic: bool = True) -> Carrier:
    return Carrier(code, name, re.compile(pattern), domestic)


CARRIERS: dict[str, Carrier] = {c.code: c for c in (
    _c("SF", "顺丰速运 SF Express", r"^SF\d{12,13}$"),
    _c("ZTO", "中通快递 ZTO Express", r"^(7[0-9]|5[0-9]|6[0-9])\d{10,12}$"),
    _c("YTO", "圆通速递 YTO Express", r"^YT\d{13,15}$"),
    _c("STO", "申通快递 STO Express", r"^(77|88|66|55|33|22)\d{11,13}$"),
    _c("YUNDA", "韵达快递 Yunda Express", r"^(31|43|46|1[0-9])\d{11,13}$"),
    _c("JT", "极兔速递 J&T Express", r"^JT\d{13}$"),
    _c("EMS", "中国邮政 EMS", r"^(E[A-Z]\d{9}CN|1\d{12})$"),
    _c("POSTB", "邮政快递包裹 China Post parcel", r"^(9\d{12}|[A-Z]{2}\d{9}CN)$"),
    _c("JD", "京东物流 JD Logistics", r"^JD[A-Z0-9]{11,15}$"),
    _c("DBL", "德邦快递 Deppon", r"^DPK\d{12}$"),
    _c("UPS", "UPS", r"^1Z[0-9A-Z]{16}$", domestic=False),
    _c("FEDEX", "FedEx", r"^\d{12}(\d{3})?$", domestic=False),
    _c("DHL", "DHL Express", r"^\d{10}$", domestic=False),
    _c("USPS", "USPS", r"^(9\d{21}|9\d{25}|[A-Z]{2}\d{9}US)$", domestic=False),
)}

DOMESTIC = frozenset(code for code, c in CARRIERS.items() if c.domestic)
INTERNATIONAL = frozenset(code for code, c in CARRIERS.items() if not c.domestic)


def tracking_matches(carrier: str, tracking_number: str) -> bool:
    known = CARRIERS.get(carrier)
    return known is not None and bool(known.tracking_format.match(tracking_number))
