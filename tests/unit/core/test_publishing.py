"""Channel quantities: shared and strict modes, with the rule priority SKU > listing > shop."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.config import PublishRules
from core.publishing import effective_rules, shared_quantity, strict_allocation


def rules(ratio: float = 1.0, safety: int = 0, max_listed: int | None = None,
          zero_below: int = 0) -> PublishRules:
    return PublishRules(ratio, safety, max_listed, zero_below)


def test_shared_quantity() -> None:
    assert shared_quantity(10, rules(0.8)) == 8
    assert shared_quantity(5, rules(0.8)) == 4
    assert shared_quantity(10, rules(0.8, safety=2)) == 6  # floor((10 − 2) × 0.8)
    assert shared_quantity(100, rules(1.0, max_listed=30)) == 30
    assert shared_quantity(2, rules(1.0, zero_below=2)) == 0  # at or below N publishes 0
    assert shared_quantity(3, rules(1.0, zero_below=2)) == 3
    assert shared_quantity(1, rules(1.0, safety=3)) == 0


def test_rule_priority_sku_over_listing_over_shop() -> None:
    shop = {"sync_ratio": 0.5, "safety_stock": 1}
    listing = {"sync_ratio": 0.8}
    sku = {"safety_stock": 4}
    assert effective_rules(shop, listing, sku) == rules(0.8, safety=4)
    assert effective_rules(shop, {}, {}) == rules(0.5, safety=1)


def test_strict_largest_remainder() -> None:
    shares = strict_allocation(10, [(1, rules(1.0)), (2, rules(1.0)), (3, rules(1.0))])
    assert shares == {1: 4, 2: 3, 3: 3}
    assert strict_allocation(1, [(1, rules(1.0)), (2, rules(1.0))]) == {1: 1, 2: 0}
    assert strict_allocation(10, [(1, rules(0.8)), (2, rules(0.2))]) == {1: 8, 2: 2}


@given(available=st.integers(0, 500),
       channels=st.lists(st.tuples(st.sampled_from([0.1, 0.25, 0.5, 0.8, 1.0]),
                                   st.integers(0, 5), st.one_of(st.none(), st.integers(0, 50)),
                                   st.integers(0, 3)), min_size=1, max_size=8))
def test_strict_never_exceeds_available(available: int,
                                        channels: list[tuple[float, int, int | None, int]]) -> None:
    shares = strict_allocation(available, [(i, rules(*c)) for i, c in enumerate(channels)])
    assert sum(shares.values()) <= available
    assert all(q >= 0 for q in shares.values())
