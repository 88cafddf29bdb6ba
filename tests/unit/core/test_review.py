"""The operators' review rules, each with its boundary."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core.review import OrderFacts, ReviewRules, load_rules, review
from core.testing.builders import T0

RULES = ReviewRules.from_toml(load_rules(Path(__file__).resolve().parents[3] / "config" / "rules.toml"))
PRECISE = "文三路 100 号"


def facts(fen: int, *, province: str = "浙江省", detail: str = PRECISE, remark: str = "",
          presale_days: int | None = None) -> OrderFacts:
    return OrderFacts(paid_fen=fen, province=province, address_detail=detail, buyer_remark=remark,
                      presale_until=None if presale_days is None else T0 + timedelta(days=presale_days))


@pytest.mark.parametrize(("order", "action", "rule"), [
    (facts(50_000), "approve", "auto_approve"),                     # 500.00: approved
    (facts(50_001), "hold", "manual_review"),                       # 500.01: a person looks
    (facts(500_000), "hold", "manual_review"),                      # 5000.00: ordinary review
    (facts(500_001), "hold", "amount_over_manual_limit"),           # 5000.01: held
    (facts(9_900, province="新疆维吾尔自治区"), "hold", "remote_region"),
    (facts(9_900, province="西藏自治区"), "hold", "remote_region"),
    (facts(9_900, detail="科技园公司前台"), "hold", "vague_address"),
    (facts(9_900, detail="深圳南山区科技园"), "hold", "vague_address"),  # no street number
    (facts(9_900, remark="请加急发货"), "hold", "urgent_remark"),
    (facts(9_900, presale_days=3), "wait", "presale"),
    (facts(9_900, presale_days=-1), "approve", "auto_approve"),      # promise already due
])
def test_review_rules(order: OrderFacts, action: str, rule: str) -> None:
    decision = review(RULES, order, T0)
    assert (decision.action, decision.rule) == (action, rule)


def test_urgent_remark_marks_priority() -> None:
    assert review(RULES, facts(9_900, remark="加急"), T0).priority
    assert not review(RULES, facts(9_900), T0).priority
