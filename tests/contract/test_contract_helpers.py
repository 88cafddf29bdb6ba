"""The contract suite's own helpers: waybills in every carrier's format, one-byte tampering."""

from __future__ import annotations

import pytest

from core.carriers import CARRIERS, tracking_matches
from core.testing.contract import _tamper, sample_waybill


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_sample_waybills_match_the_carrier_format_and_never_repeat(carrier: str) -> None:
    numbers = {sample_waybill(carrier) for _ in range(50)}
    assert len(numbers) == 50
    assert all(tracking_matches(carrier, n) for n in numbers)


@pytest.mark.parametrize(("body", "hint"), [
    (b'{"id": "E20261111000000000000001", "x": 1}', "E20261111000000000000001"),
    (b'{"msg": "u6pOGjlfjbmKhYCVjYgFYeN5dzOP9xH9DTLbxmEh6kQ="}', "110000000000004"),
])
def test_tampering_changes_exactly_one_byte_and_keeps_the_text_printable(
        body: bytes, hint: str) -> None:
    changed = _tamper(body, hint)
    assert len(changed) == len(body)
    assert sum(a != b for a, b in zip(body, changed, strict=True)) == 1
    assert changed.decode("ascii").isprintable()
