"""The master catalogue: products and their SKUs, keyed by merchant code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.model import Product, Sku


@dataclass(frozen=True, slots=True)
class SkuSpec:
    merchant_code: str
    price_fen: int
    spec: Mapping[str, str] = field(default_factory=dict)
    barcode: str = ""
    weight_g: int = 0
    bulky: bool = False
    presale_days: int | None = None


@dataclass(frozen=True, slots=True)
class ProductSpec:
    merchant_code: str
    title: str
    skus: Sequence[SkuSpec]
    categories: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    images: Sequence[str] = ()
    detail_images: Sequence[str] = ()
    description: str = ""


async def upsert_product(session: AsyncSession, spec: ProductSpec, now: datetime) -> Product:
    product = await session.scalar(select(Product).where(
        Product.merchant_code == spec.merchant_code))
    if product is None:
        product = Product(merchant_code=spec.merchant_code, created_at=now)
        session.add(product)
    product.title = spec.title
    product.description = spec.description
    product.categories = dict(spec.categories)
    product.attributes = dict(spec.attributes)
    product.images = list(spec.images)
    product.detail_images = list(spec.detail_images)
    product.updated_at = now
    await session.flush()
    for sku_spec in spec.skus:
        sku = await session.scalar(select(Sku).where(Sku.merchant_code == sku_spec.merchant_code))
        if sku is None:
            sku = Sku(merchant_code=sku_spec.merchant_code, product_id=product.id, created_at=now)
            session.add(sku)
        sku.product_id = product.id
        sku.price_fen = sku_spec.price_fen
        sku.spec = dict(sku_spec.spec)
        sku.barcode = sku_spec.barcode
        sku.weight_g = sku_spec.weight_g
        sku.bulky = sku_spec.bulky
        sku.presale_days = sku_spec.presale_days
        sku.updated_at = now
    await session.flush()
    return product
