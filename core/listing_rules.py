"""Listing rules: what a platform would refuse or rank down, checked before anything is sent.

The rules are data (`config/rules.toml` [listing]): title limits per platform (Taobao counts
60 bytes, a CJK character being 2; others 30 characters), the 广告法 banned words, image
sizes, the attributes each category asks for, leaf categories and Taobao's property ids.
`validate_product` reports every problem of a product at once, each with a code, so an
operator fixes the whole catalogue in one pass instead of one refusal at a time. The checks
read the catalogue only (a `ProductSpec`) and real image files (Pillow); they never call a
platform, so `erpsync listings validate` works offline and the sender re-runs them just
before a listing leaves.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from core.catalog import ProductSpec
from core.config import parse_duration
from core.money import fen_to_yuan


class Code(enum.StrEnum):
    TITLE_EMPTY = "TITLE_EMPTY"
    TITLE_TOO_LONG = "TITLE_TOO_LONG"
    BANNED_WORD = "BANNED_WORD"
    IMAGE_MISSING = "IMAGE_MISSING"
    IMAGE_UNREADABLE = "IMAGE_UNREADABLE"
    IMAGE_NOT_SQUARE = "IMAGE_NOT_SQUARE"
    IMAGE_TOO_SMALL = "IMAGE_TOO_SMALL"
    DETAIL_IMAGE_TOO_WIDE = "DETAIL_IMAGE_TOO_WIDE"
    ATTRIBUTE_MISSING = "ATTRIBUTE_MISSING"
    ATTRIBUTES_INCOMPLETE = "ATTRIBUTES_INCOMPLETE"
    CATEGORY_NOT_LEAF = "CATEGORY_NOT_LEAF"
    PROPERTY_UNMAPPED = "PROPERTY_UNMAPPED"
    PRICE_NOT_POSITIVE = "PRICE_NOT_POSITIVE"
    NO_SKUS = "NO_SKUS"
    SKU_SPEC_INCONSISTENT = "SKU_SPEC_INCONSISTENT"
    SKU_SPEC_DUPLICATE = "SKU_SPEC_DUPLICATE"
    PRESALE_PROMISE = "PRESALE_PROMISE"


@dataclass(frozen=True, slots=True)
class Problem:
    code: Code
    field: str
    message: str
    sku: str = ""
    position: int | None = None  # 1-based character position (banned words)

    def __str__(self) -> str:
        where = f"{self.field}[{self.sku}]" if self.sku else self.field
        return f"{self.code} {where}: {self.message}"


@dataclass(frozen=True, slots=True)
class CategoryAttributes:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return self.required + tuple(a for a in self.optional if a not in self.required)


@dataclass(frozen=True, slots=True)
class ListingRules:
    banned_words: tuple[str, ...] = ()
    title_max_chars: int = 30
    title_chars: Mapping[str, int] = field(default_factory=dict)  # platform -> characters
    title_bytes: Mapping[str, int] = field(default_factory=dict)  # platform -> bytes
    first_image_min_px: int = 800
    detail_image_max_width_px: int = 750
    attribute_completeness: Fraction = Fraction(9, 10)
    dormant_after: timedelta = timedelta(days=7)
    leaf_categories: Mapping[str, frozenset[str]] = field(default_factory=dict)
    category_attributes: Mapping[str, Mapping[str, CategoryAttributes]] = field(
        default_factory=dict)
    property_ids: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    value_ids: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, data: Mapping[str, Any]) -> ListingRules:
        table: Mapping[str, Any] = data.get("listing", {})
        defaults = cls()
        attributes = {
            platform: {str(cid): CategoryAttributes(tuple(v.get("required", ())),
                                                    tuple(v.get("optional", ())))
                       for cid, v in categories.items()}
            for platform, categories in table.get("required_attributes", {}).items()}
        return cls(
            banned_words=tuple(str(w) for w in table.get("banned_words", ())),
            title_max_chars=int(table.get("title_max_chars", defaults.title_max_chars)),
            title_chars={k: int(v) for k, v in table.get("title_chars", {}).items()},
            title_bytes={k: int(v) for k, v in table.get("title_bytes", {}).items()},
            first_image_min_px=int(table.get("first_image_min_px",
                                              defaults.first_image_min_px)),
            detail_image_max_width_px=int(table.get("detail_image_max_width_px",
                                                    defaults.detail_image_max_width_px)),
            # a fraction, so 9 of 10 is exactly 0.9 and never a rounding error below it
            attribute_completeness=Fraction(str(table.get("attribute_completeness", "0.9"))),
            dormant_after=parse_duration(table.get("dormant_after", "7d")),
            leaf_categories={k: frozenset(str(c) for c in v)
                             for k, v in table.get("leaf_categories", {}).items()},
            category_attributes=attributes,
            property_ids={k: {str(n): str(i) for n, i in v.items()}
                          for k, v in table.get("property_ids", {}).items()},
            value_ids={p: {str(n): {str(a): str(b) for a, b in values.items()}
                           for n, values in names.items()}
                       for p, names in table.get("value_ids", {}).items()},
        )

    def title_limit(self, platform: str) -> tuple[int, str]:
        """(limit, unit): bytes where the platform counts bytes, else characters."""
        if platform in self.title_bytes:
            return self.title_bytes[platform], "bytes"
        return self.title_chars.get(platform, self.title_max_chars), "characters"


def title_length(title: str, unit: str) -> int:
    """Taobao counts bytes the GBK way: ASCII is 1, a CJK (or any other non-ASCII)
    character is 2. Other platforms count characters."""
    if unit == "bytes":
        return sum(1 if ord(ch) < 128 else 2 for ch in title)
    return len(title)


def find_banned(text: str, words: Iterable[str]) -> list[tuple[str, int]]:
    """(word, 1-based character position) for every occurrence, case-insensitive. An
    occurrence inside a longer banned word's occurrence is not repeated ("全网最低" is
    reported, not also the "最" inside it)."""
    folded = text.casefold()
    hits: list[tuple[int, int, str]] = []
    for word in {w for w in words if w}:
        needle = word.casefold()
        start = folded.find(needle)
        while start >= 0:
            hits.append((start, start + len(needle), word))
            start = folded.find(needle, start + 1)
    kept = [h for h in hits
            if not any(o is not h and o[0] <= h[0] and h[1] <= o[1] and o[1] - o[0] > h[1] - h[0]
                       for o in hits)]
    return [(word, start + 1) for start, _, word in sorted(kept)]


class ImageInspector:
    """Reads image sizes from files with Pillow, once per (path, modification time).

    Images are files the agent can read (paths, made absolute at import). URLs are left
    alone: they already live in a platform's image space, which checks them on upload."""

    def __init__(self) -> None:
        self._sizes: dict[tuple[str, float], tuple[int, int] | str] = {}

    def size(self, reference: str) -> tuple[int, int] | str | None:
        """(width, height), an error text, or None for a URL (not checked here)."""
        if reference.startswith(("http://", "https://")):
            return None
        path = Path(reference)
        try:
            key = (str(path), path.stat().st_mtime)
        except OSError:
            return "file not found"
        if key not in self._sizes:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(path) as image:
                    self._sizes[key] = (int(image.width), int(image.height))
            except (OSError, UnidentifiedImageError) as exc:
                self._sizes[key] = f"not an image ({type(exc).__name__})"
        return self._sizes[key]


def map_properties(rules: ListingRules, platform: str,
                   values: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Catalogue names/values -> the platform's property ids, where it uses ids (Taobao's
    pid:vid). Returns (mapped, unmapped names). Platforms without an id table take names."""
    pids = rules.property_ids.get(platform)
    if pids is None:
        return dict(values), []
    vids = rules.value_ids.get(platform, {})
    mapped: dict[str, str] = {}
    unmapped: list[str] = []
    for name, value in values.items():
        pid = name if name.isdigit() else pids.get(name)
        vid = value if value.isdigit() else vids.get(name, {}).get(value)
        if pid is None or vid is None:
            unmapped.append(f"{name}={value}")
            mapped[name] = value  # sent as is: the platform refuses, and says why
        else:
            mapped[pid] = vid
    return mapped, unmapped


def _filled(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def validate_product(spec: ProductSpec, platform: str, rules: ListingRules,
                     images: ImageInspector | None = None) -> list[Problem]:
    """Every problem of one product for one platform ("" = the platform-independent checks:
    title in characters, banned words, images, prices and SKUs)."""
    problems: list[Problem] = []
    problems += _title(spec, platform, rules)
    problems += _banned(spec, rules)
    problems += _images(spec, rules, images or ImageInspector())
    problems += _skus(spec)
    if platform:
        problems += _category(spec, platform, rules)
        problems += _properties(spec, platform, rules)
    return problems


def _title(spec: ProductSpec, platform: str, rules: ListingRules) -> list[Problem]:
    if not spec.title.strip():
        return [Problem(Code.TITLE_EMPTY, "title", "the title is empty")]
    limit, unit = rules.title_limit(platform)
    length = title_length(spec.title, unit)
    if length > limit:
        where = f"on {platform}" if platform else "by default"
        return [Problem(Code.TITLE_TOO_LONG, "title",
                        f"{length} {unit}, at most {limit} {unit} {where}")]
    return []


def _banned(spec: ProductSpec, rules: ListingRules) -> list[Problem]:
    problems = []
    for name, text in (("title", spec.title), ("description", spec.description)):
        for word, position in find_banned(text, rules.banned_words):
            problems.append(Problem(Code.BANNED_WORD, name,
                                    f"banned word {word!r} at character {position}",
                                    position=position))
    return problems


def _images(spec: ProductSpec, rules: ListingRules, images: ImageInspector) -> list[Problem]:
    problems: list[Problem] = []
    if not spec.images:
        problems.append(Problem(Code.IMAGE_MISSING, "images", "no main image"))
    for index, reference in enumerate(spec.images):
        size = images.size(reference)
        where = f"images[{index + 1}]"
        if isinstance(size, str):
            problems.append(Problem(Code.IMAGE_UNREADABLE, where, f"{reference}: {size}"))
        elif size is not None and index == 0:
            width, height = size
            if width != height:
                problems.append(Problem(Code.IMAGE_NOT_SQUARE, where,
                                        f"{width}×{height}, the first image must be 1:1"))
            minimum = rules.first_image_min_px
            if width < minimum or height < minimum:
                problems.append(Problem(Code.IMAGE_TOO_SMALL, where,
                                        f"{width}×{height}, at least {minimum}×{minimum}"))
    for index, reference in enumerate(spec.detail_images):
        size = images.size(reference)
        where = f"detail_images[{index + 1}]"
        if isinstance(size, str):
            problems.append(Problem(Code.IMAGE_UNREADABLE, where, f"{reference}: {size}"))
        elif size is not None and size[0] > rules.detail_image_max_width_px:
            problems.append(Problem(Code.DETAIL_IMAGE_TOO_WIDE, where,
                                    f"{size[0]} px wide, at most "
                                    f"{rules.detail_image_max_width_px}"))
    return problems


def _skus(spec: ProductSpec) -> list[Problem]:
    if not spec.skus:
        return [Problem(Code.NO_SKUS, "skus", "a product needs at least one SKU")]
    problems: list[Problem] = []
    for sku in spec.skus:
        if sku.price_fen <= 0:
            problems.append(Problem(Code.PRICE_NOT_POSITIVE, "price",
                                    f"{fen_to_yuan(sku.price_fen)} must be above 0",
                                    sku=sku.merchant_code))
        if sku.presale_days is not None and sku.presale_days <= 0:
            problems.append(Problem(Code.PRESALE_PROMISE, "presale_days",
                                    "a presale SKU must promise a ship-by in days (> 0)",
                                    sku=sku.merchant_code))
    keys = {sku.merchant_code: frozenset(sku.spec) for sku in spec.skus}
    expected = keys[spec.skus[0].merchant_code]
    for code, have in keys.items():
        if have != expected:
            problems.append(Problem(
                Code.SKU_SPEC_INCONSISTENT, "spec",
                f"spec keys {sorted(have)} differ from {sorted(expected)} "
                f"(first SKU {spec.skus[0].merchant_code})", sku=code))
    seen: dict[tuple[tuple[str, str], ...], str] = {}
    for sku in spec.skus:
        values = tuple(sorted(sku.spec.items()))
        if len(spec.skus) > 1 and values in seen:
            problems.append(Problem(Code.SKU_SPEC_DUPLICATE, "spec",
                                    f"same spec as {seen[values]}: buyers cannot tell them apart",
                                    sku=sku.merchant_code))
        seen.setdefault(values, sku.merchant_code)
    return problems


def _category(spec: ProductSpec, platform: str, rules: ListingRules) -> list[Problem]:
    category = str(spec.categories.get(platform, ""))
    if not category:
        return []
    problems: list[Problem] = []
    leaves = rules.leaf_categories.get(platform)
    if leaves is not None and category not in leaves:
        problems.append(Problem(Code.CATEGORY_NOT_LEAF, "category",
                                f"{platform} category {category} is not a known leaf category"))
    wanted = rules.category_attributes.get(platform, {}).get(category)
    if wanted is None:
        return problems
    filled = [name for name in wanted.all if _filled(spec.attributes.get(name))]
    for name in wanted.required:
        if name not in filled:
            problems.append(Problem(Code.ATTRIBUTE_MISSING, "attributes",
                                    f"{name!r} is required in {platform} category {category}"))
    total = len(wanted.all)
    if total and Fraction(len(filled), total) < rules.attribute_completeness:
        missing = [name for name in wanted.all if name not in filled]
        problems.append(Problem(
            Code.ATTRIBUTES_INCOMPLETE, "attributes",
            f"{len(filled)} of {total} filled ({100 * len(filled) // total} %), at least "
            f"{_percent(rules.attribute_completeness)} %; missing: {', '.join(missing)}"))
    return problems


def _percent(value: Fraction) -> str:
    percent = value * 100
    return str(int(percent)) if percent.denominator == 1 else f"{float(percent):.1f}"


def _properties(spec: ProductSpec, platform: str, rules: ListingRules) -> list[Problem]:
    if platform not in rules.property_ids:
        return []
    problems: list[Problem] = []
    attributes = {str(k): str(v) for k, v in spec.attributes.items() if _filled(v)}
    for pair in map_properties(rules, platform, attributes)[1]:
        problems.append(Problem(Code.PROPERTY_UNMAPPED, "attributes",
                                f"{pair} has no {platform} property id in the rules"))
    reported: set[str] = set()
    for sku in spec.skus:
        for pair in map_properties(rules, platform, dict(sku.spec))[1]:
            if pair not in reported:
                reported.add(pair)
                problems.append(Problem(Code.PROPERTY_UNMAPPED, "spec",
                                        f"{pair} has no {platform} property id in the rules",
                                        sku=sku.merchant_code))
    return problems


def codes(problems: Sequence[Problem]) -> list[str]:
    return [str(p.code) for p in problems]
