"""Money is integer fen (分) inside erpsync; platforms speak yuan strings or fen integers."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation


class MoneyError(ValueError):
    pass


def yuan_to_fen(value: str | int | Decimal) -> int:
    """'12.30' -> 1230. Refuses floats and more than two decimals (no silent rounding)."""
    if isinstance(value, float):  # pragma: no cover - guarded for callers that slip
        raise MoneyError("money must not be a float")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"not an amount: {value!r}") from exc
    if not amount.is_finite():
        raise MoneyError(f"not an amount: {value!r}")
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise MoneyError(f"more than two decimals: {value!r}")
    return int(fen)


def fen_to_yuan(fen: int) -> str:
    """1230 -> '12.30'."""
    return str((Decimal(fen) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def cents_to_fen(value: str | int | Decimal) -> int:
    """Shopify/WooCommerce '12.30' in the shop currency; the minor unit is kept as 'fen'."""
    return yuan_to_fen(value)
