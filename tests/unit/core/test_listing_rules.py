"""The listing rules, one table per rule, each at its boundary: 30 vs 31 characters, 60 vs
61 Taobao bytes, 799 vs 800 px, 750 vs 751 px, 89 % vs 90 % of the category's attributes.
Images are real files written with Pillow."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.catalog import ProductSpec, SkuSpec
from core.listing_rules import (
    CategoryAttributes,
    Code,
    ImageInspector,
    ListingRules,
    codes,
    find_banned,
    map_properties,
    title_length,
    validate_product,
)
from core.review import load_rules

ROOT = Path(__file__).resolve().parents[3]
RULES = ListingRules.from_toml(load_rules(ROOT / "config" / "rules.toml"))


def image(tmp_path: Path, width: int, height: int, name: str | None = None) -> str:
    path = tmp_path / (name or f"{width}x{height}.png")
    Image.new("RGB", (width, height), "white").save(path)
    return str(path)


def product(tmp_path: Path, **changes: Any) -> ProductSpec:
    """A product that passes every rule on Taobao; tests change one thing at a time."""
    base = ProductSpec(
        merchant_code="MUG", title="陶瓷马克杯 办公室咖啡杯",
        skus=(SkuSpec("MUG-W", 3900, {"颜色": "白色"}), SkuSpec("MUG-B", 4900, {"颜色": "黑色"})),
        categories={"taobao": "121412004"},
        attributes={"品牌": "3246379", "材质": "陶瓷", "容量": "350ml", "风格": "简约"},
        images=(image(tmp_path, 800, 800),), detail_images=(image(tmp_path, 750, 2000),),
        description="釉下彩陶瓷，可用洗碗机")
    return replace(base, **changes)


TAOBAO_IDS = replace(RULES, property_ids={}, value_ids={})  # names pass as they are


def problems_of(spec: ProductSpec, platform: str = "taobao",
                rules: ListingRules = TAOBAO_IDS) -> list[str]:
    return codes(validate_product(spec, platform, rules, ImageInspector()))


def test_the_reference_product_passes(tmp_path: Path) -> None:
    assert problems_of(product(tmp_path)) == []
    assert problems_of(product(tmp_path), "douyin") == []
    assert problems_of(product(tmp_path), "") == []


# -- title ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("title", "platform", "ok"), [
    ("好" * 30, "taobao", True),  # 60 bytes
    ("好" * 30 + "a", "taobao", False),  # 61 bytes
    ("好" * 31, "taobao", False),  # 62 bytes
    ("a" * 60, "taobao", True),
    ("a" * 61, "taobao", False),
    ("好" * 29 + "ab", "taobao", True),  # 58 + 2
    ("好" * 30, "douyin", True),  # 30 characters
    ("好" * 31, "douyin", False),  # 31 characters
    ("a" * 30, "pinduoduo", True),
    ("a" * 31, "pinduoduo", False),
    ("好" * 30, "", True),
    ("好" * 31, "", False),
])
def test_title_length(tmp_path: Path, title: str, platform: str, ok: bool) -> None:
    found = problems_of(product(tmp_path, title=title), platform)
    assert (found == []) is ok, found
    if not ok:
        assert found == ["TITLE_TOO_LONG"]


def test_title_length_counts_bytes_or_characters() -> None:
    assert title_length("好a", "bytes") == 3
    assert title_length("好a", "characters") == 2
    assert title_length("１００％", "bytes") == 8  # full-width counts 2 like CJK


def test_title_too_long_says_the_unit_and_limit(tmp_path: Path) -> None:
    [problem] = validate_product(product(tmp_path, title="好" * 31), "taobao", TAOBAO_IDS)
    assert problem.message == "62 bytes, at most 60 bytes on taobao"
    [problem] = validate_product(product(tmp_path, title="好" * 31), "douyin", TAOBAO_IDS)
    assert problem.message == "31 characters, at most 30 characters on douyin"


def test_a_per_platform_character_limit_wins() -> None:
    rules = ListingRules.from_toml({"listing": {"title_max_chars": 30,
                                                "title_chars": {"pinduoduo": 60}}})
    assert rules.title_limit("pinduoduo") == (60, "characters")
    assert rules.title_limit("douyin") == (30, "characters")


def test_empty_title(tmp_path: Path) -> None:
    assert problems_of(product(tmp_path, title="  ")) == ["TITLE_EMPTY"]


# -- banned words -----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("陶瓷马克杯", []),
    ("最好的马克杯", [("最", 1)]),
    ("马克杯第一品牌", [("第一", 4)]),
    ("全网最低价", [("全网最低", 1), ("最低价", 3)]),  # the 最 inside is not repeated
    ("100%纯棉", [("100%", 1)]),
    ("绝对好用，绝对耐摔", [("绝对", 1), ("绝对", 6)]),
])
def test_banned_words_with_their_position(text: str, expected: list[tuple[str, int]]) -> None:
    assert find_banned(text, RULES.banned_words) == expected


def test_banned_words_ignore_case() -> None:
    assert find_banned("The BEST mug", ["best"]) == [("best", 5)]


def test_banned_word_in_title_and_description(tmp_path: Path) -> None:
    spec = product(tmp_path, title="顶级陶瓷马克杯", description="史无前例的手感")
    found = validate_product(spec, "taobao", TAOBAO_IDS)
    assert [(p.code, p.field, p.position) for p in found] == [
        (Code.BANNED_WORD, "title", 1), (Code.BANNED_WORD, "description", 1)]
    assert "'顶级' at character 1" in found[0].message


# -- images -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "expected"), [
    ((800, 800), []),
    ((1200, 1200), []),
    ((799, 799), ["IMAGE_TOO_SMALL"]),
    ((800, 801), ["IMAGE_NOT_SQUARE"]),
    ((799, 800), ["IMAGE_NOT_SQUARE", "IMAGE_TOO_SMALL"]),
])
def test_first_image_square_and_at_least_800(tmp_path: Path, size: tuple[int, int],
                                             expected: list[str]) -> None:
    spec = product(tmp_path, images=(image(tmp_path, *size),))
    assert problems_of(spec) == expected


def test_only_the_first_image_must_be_square(tmp_path: Path) -> None:
    spec = product(tmp_path, images=(image(tmp_path, 800, 800), image(tmp_path, 640, 480)))
    assert problems_of(spec) == []


@pytest.mark.parametrize(("width", "expected"), [
    (750, []), (751, ["DETAIL_IMAGE_TOO_WIDE"]), (320, []),
])
def test_detail_images_at_most_750_wide(tmp_path: Path, width: int, expected: list[str]) -> None:
    spec = product(tmp_path, detail_images=(image(tmp_path, width, 3000),))
    assert problems_of(spec) == expected


def test_missing_unreadable_and_remote_images(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    spec = product(tmp_path, images=(str(tmp_path / "nope.jpg"), str(broken),
                                     "https://img.alicdn.com/x.jpg"))
    found = validate_product(spec, "taobao", TAOBAO_IDS)
    assert [(p.code, p.field) for p in found] == [
        (Code.IMAGE_UNREADABLE, "images[1]"), (Code.IMAGE_UNREADABLE, "images[2]")]
    assert "file not found" in found[0].message
    assert problems_of(product(tmp_path, images=())) == ["IMAGE_MISSING"]


def test_image_sizes_are_read_once_per_file_version(tmp_path: Path) -> None:
    inspector = ImageInspector()
    path = image(tmp_path, 800, 800, "a.png")
    assert inspector.size(path) == (800, 800)
    Image.new("RGB", (10, 10)).save(tmp_path / "other.png")
    assert inspector.size(str(tmp_path / "other.png")) == (10, 10)
    assert inspector.size("http://example.invalid/a.png") is None


# -- attributes -------------------------------------------------------------------------------
def completeness_rules(total: int, required: int = 1) -> ListingRules:
    names = [f"a{i:03d}" for i in range(total)]
    table = {"taobao": {"1": CategoryAttributes(tuple(names[:required]),
                                                tuple(names[required:]))}}
    return replace(TAOBAO_IDS, category_attributes=table, leaf_categories={})


@pytest.mark.parametrize(("filled", "total", "ok"), [
    (90, 100, True), (89, 100, False), (9, 10, True), (8, 10, False), (10, 10, True),
    (27, 30, True), (26, 30, False),
])
def test_attribute_completeness_at_90_percent(tmp_path: Path, filled: int, total: int,
                                              ok: bool) -> None:
    rules = completeness_rules(total)
    spec = product(tmp_path, categories={"taobao": "1"},
                   attributes={f"a{i:03d}": "x" for i in range(filled)})
    found = problems_of(spec, rules=rules)
    assert found == ([] if ok else ["ATTRIBUTES_INCOMPLETE"])


def test_incomplete_attributes_name_what_is_missing(tmp_path: Path) -> None:
    spec = product(tmp_path, attributes={"品牌": "x", "材质": "陶瓷", "容量": " "})
    found = validate_product(spec, "taobao", TAOBAO_IDS)
    assert codes(found) == ["ATTRIBUTES_INCOMPLETE"]
    assert found[0].message == "2 of 4 filled (50 %), at least 90 %; missing: 容量, 风格"


def test_required_attributes_must_be_present(tmp_path: Path) -> None:
    spec = product(tmp_path, attributes={"材质": "陶瓷", "容量": "350ml", "风格": "简约"})
    found = validate_product(spec, "taobao", TAOBAO_IDS)
    assert codes(found) == ["ATTRIBUTE_MISSING", "ATTRIBUTES_INCOMPLETE"]
    assert "'品牌' is required" in found[0].message


def test_no_attribute_table_for_a_category_means_no_attribute_check(tmp_path: Path) -> None:
    spec = product(tmp_path, categories={"douyin": "20001"}, attributes={})
    assert problems_of(spec, "douyin") == []


# -- category ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("category", "expected"), [
    ("121412004", []), ("50016348", ["CATEGORY_NOT_LEAF"]),
])
def test_category_must_be_a_known_leaf(tmp_path: Path, category: str,
                                       expected: list[str]) -> None:
    assert problems_of(product(tmp_path, categories={"taobao": category})) == expected


def test_no_leaf_list_for_a_platform_accepts_any_category(tmp_path: Path) -> None:
    spec = product(tmp_path, categories={"taobao": "121412004", "douyin": "anything"})
    assert problems_of(spec, "douyin") == []


# -- prices and SKUs --------------------------------------------------------------------------
@pytest.mark.parametrize(("price", "expected"), [
    (1, []), (9900, []), (0, ["PRICE_NOT_POSITIVE"]), (-100, ["PRICE_NOT_POSITIVE"]),
])
def test_price_above_zero(tmp_path: Path, price: int, expected: list[str]) -> None:
    spec = product(tmp_path, skus=(SkuSpec("MUG-W", price, {"颜色": "白色"}),))
    assert problems_of(spec) == expected


@pytest.mark.parametrize(("skus", "expected"), [
    ((SkuSpec("A", 100, {"颜色": "白色", "尺码": "M"}), SkuSpec("B", 100, {"颜色": "黑色", "尺码": "M"})),
     []),
    ((SkuSpec("A", 100, {"颜色": "白色", "尺码": "M"}), SkuSpec("B", 100, {"颜色": "黑色"})),
     ["SKU_SPEC_INCONSISTENT"]),
    ((SkuSpec("A", 100, {"颜色": "白色"}), SkuSpec("B", 100, {"颜色": "白色"})),
     ["SKU_SPEC_DUPLICATE"]),
    ((SkuSpec("A", 100),), []),
    ((), ["NO_SKUS"]),
    ((SkuSpec("A", 100, presale_days=0),), ["PRESALE_PROMISE"]),
    ((SkuSpec("A", 100, presale_days=3),), []),
])
def test_skus(tmp_path: Path, skus: tuple[SkuSpec, ...], expected: list[str]) -> None:
    assert problems_of(product(tmp_path, skus=skus)) == expected


def test_inconsistent_spec_names_the_sku(tmp_path: Path) -> None:
    skus = (SkuSpec("A", 100, {"颜色": "白色"}), SkuSpec("B", 100, {"尺码": "M"}))
    [problem] = validate_product(product(tmp_path, skus=skus), "", TAOBAO_IDS)
    assert (problem.sku, problem.field) == ("B", "spec")


# -- Taobao property ids ----------------------------------------------------------------------
def test_taobao_properties_map_to_ids() -> None:
    mapped, unmapped = map_properties(RULES, "taobao", {"颜色": "白色", "品牌": "3246379",
                                                        "20021": "123"})
    assert mapped == {"1627207": "28320", "20000": "3246379", "20021": "123"}
    assert unmapped == []
    mapped, unmapped = map_properties(RULES, "taobao", {"颜色": "紫色", "产地": "景德镇"})
    assert unmapped == ["颜色=紫色", "产地=景德镇"]
    assert map_properties(RULES, "douyin", {"颜色": "紫色"}) == ({"颜色": "紫色"}, [])


def test_unmapped_taobao_properties_are_reported(tmp_path: Path) -> None:
    spec = product(tmp_path, attributes={"品牌": "3246379", "材质": "陶瓷"},
                   skus=(SkuSpec("MUG-W", 3900, {"颜色": "白色"}),
                         SkuSpec("MUG-P", 3900, {"颜色": "紫色"})))
    rules = replace(RULES, category_attributes={})
    found = validate_product(spec, "taobao", rules)
    assert [(p.code, p.field, p.sku) for p in found] == [
        (Code.PROPERTY_UNMAPPED, "attributes", ""), (Code.PROPERTY_UNMAPPED, "spec", "MUG-P")]
    assert "材质=陶瓷" in found[0].message


# -- all at once ------------------------------------------------------------------------------
def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    spec = ProductSpec(
        merchant_code="BAD", title="全网最低价" + "好" * 40,
        skus=(SkuSpec("A", 0, {"颜色": "白色"}), SkuSpec("B", 100, {"尺码": "M"})),
        categories={"taobao": "999"}, attributes={},
        images=(image(tmp_path, 640, 480),), detail_images=(image(tmp_path, 1000, 100),))
    assert sorted(problems_of(spec)) == sorted([
        "TITLE_TOO_LONG", "BANNED_WORD", "BANNED_WORD", "IMAGE_NOT_SQUARE", "IMAGE_TOO_SMALL",
        "DETAIL_IMAGE_TOO_WIDE", "PRICE_NOT_POSITIVE", "SKU_SPEC_INCONSISTENT",
        "CATEGORY_NOT_LEAF"])


def test_rules_come_from_the_rules_file() -> None:
    assert RULES.title_limit("taobao") == (60, "bytes")
    assert RULES.title_limit("douyin") == (30, "characters")
    assert "全网最低" in RULES.banned_words
    assert RULES.attribute_completeness == Fraction(9, 10)
    assert RULES.first_image_min_px == 800 and RULES.detail_image_max_width_px == 750
    assert RULES.category_attributes["taobao"]["121412004"].required == ("品牌", "材质")
    assert "121412004" in RULES.leaf_categories["taobao"]
    assert RULES.dormant_after.days == 7
