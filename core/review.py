"""The operators' review rules (config/rules.toml [review] and [regions]).

Rules are evaluated in order and the first that matches decides; the decision and its rule
are stored on the order. Stock is reserved at payment whatever the decision, so an order
waiting for a person is never outsold by one that was approved automatically.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.money import yuan_to_fen


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # approve, hold, wait
    rule: str
    reason: str
    priority: bool = False


@dataclass(frozen=True, slots=True)
class ReviewRules:
    auto_approve_max_fen: int = 50_000
    manual_review_above_fen: int = 500_000
    urgent_keywords: tuple[str, ...] = ("加急",)
    vague_patterns: tuple[str, ...] = ("公司前台",)
    number_pattern: str = r"\d"
    remote_regions: tuple[str, ...] = ("新疆", "西藏", "内蒙古")

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> ReviewRules:
        review = data.get("review", {})
        regions = data.get("regions", {})
        defaults = cls()
        return cls(
            auto_approve_max_fen=yuan_to_fen(review.get("auto_approve_max_yuan", "500")),
            manual_review_above_fen=yuan_to_fen(review.get("manual_review_above_yuan", "5000")),
            urgent_keywords=tuple(review.get("urgent_keywords", defaults.urgent_keywords)),
            vague_patterns=tuple(review.get("vague_address_patterns", defaults.vague_patterns)),
            number_pattern=review.get("address_number_pattern", defaults.number_pattern),
            remote_regions=tuple(regions.get("remote", defaults.remote_regions)),
        )


@dataclass(frozen=True, slots=True)
class OrderFacts:
    paid_fen: int
    province: str
    address_detail: str
    buyer_remark: str
    presale_until: datetime | None  # latest presale promise among the lines


def load_rules(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def is_remote(rules: ReviewRules, province: str) -> bool:
    return any(region in province for region in rules.remote_regions)


def is_vague(rules: ReviewRules, detail: str) -> bool:
    if any(pattern in detail for pattern in rules.vague_patterns):
        return True
    return re.search(rules.number_pattern, detail) is None


def urgent(rules: ReviewRules, remark: str) -> bool:
    return any(word in remark for word in rules.urgent_keywords)


def review(rules: ReviewRules, order: OrderFacts, now: datetime) -> Decision:
    yuan = Decimal(order.paid_fen) / 100
    if order.paid_fen > rules.manual_review_above_fen:
        return Decision("hold", "amount_over_manual_limit",
                        f"amount {yuan} CNY above {Decimal(rules.manual_review_above_fen) / 100}")
    if is_vague(rules, order.address_detail):
        return Decision("hold", "vague_address", f"address needs checking: {order.address_detail!r}")
    if urgent(rules, order.buyer_remark):
        return Decision("hold", "urgent_remark", f"buyer asks for urgency: {order.buyer_remark!r}",
                        priority=True)
    if order.presale_until is not None and order.presale_until > now:
        return Decision("wait", "presale", f"presale: ships by {order.presale_until.isoformat()}")
    if is_remote(rules, order.province):
        return Decision("hold", "remote_region", f"remote region {order.province}")
    if order.paid_fen <= rules.auto_approve_max_fen:
        return Decision("approve", "auto_approve", f"amount {yuan} CNY within the auto limit")
    return Decision("hold", "manual_review",
                    f"amount {yuan} CNY above {Decimal(rules.auto_approve_max_fen) / 100}: "
                    "review within 30 minutes")
