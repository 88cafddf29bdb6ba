"""Configuration: one TOML file, checked whole.

Every problem is collected with its file, key and reason, so `erpsync config check` can
print them all at once. Credentials are named by *environment variable*; the secrets
themselves are read from the environment (or the secrets file of rotated tokens) and wrapped
in `Secret` at once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.errors import ConfigError

DEFAULT_CONFIG = Path("config/demo.toml")
CREDENTIAL_KEYS = ("app_key", "app_secret", "access_token", "refresh_token")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: object) -> timedelta:
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '5m', '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration like '30s', '5m', '1h'")
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Intervals:
    orders: timedelta = timedelta(seconds=60)
    listings: timedelta = timedelta(minutes=30)
    outbox: timedelta = timedelta(seconds=5)
    tracking: timedelta = timedelta(minutes=30)
    alerts: timedelta = timedelta(minutes=5)
    reconcile: timedelta = timedelta(days=1)
    token_refresh: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class PublishRules:
    """How much of the pool a channel is shown. Overridable per listing and per SKU."""

    sync_ratio: float = 1.0
    safety_stock: int = 0
    max_listed: int | None = None
    zero_below: int = 0


@dataclass(frozen=True, slots=True)
class ShopConfig:
    name: str
    platform: str
    sandbox: bool
    base_url: str | None
    credentials: Mapping[str, str]  # credential key -> environment variable name
    extra_credentials: Mapping[str, str]  # extra secret name -> environment variable name
    publish: PublishRules
    intervals: Intervals
    promo_mode: bool
    enabled: bool
    options: Mapping[str, Any]
    # how long the platform may take to commit an order's modified time (None: the
    # connector's `limits.modified_lag`); pulls stop this far before now
    modified_lag: timedelta | None = None


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8470
    node_name: str = ""
    lease: timedelta = timedelta(seconds=60)
    shutdown_grace: timedelta = timedelta(seconds=20)


@dataclass(frozen=True, slots=True)
class InventoryConfig:
    mode: str = "shared"  # or "strict"
    online_warehouses: tuple[str, ...] = ("MAIN",)
    drift_threshold: int = 2


@dataclass(frozen=True, slots=True)
class OrdersConfig:
    overlap: timedelta = timedelta(minutes=5)
    backfill: timedelta = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    database_url: str
    rules_file: Path
    secrets_file: Path
    shops: tuple[ShopConfig, ...]
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    inventory: InventoryConfig = field(default_factory=InventoryConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    alert_sinks: tuple[Mapping[str, Any], ...] = ()
    tracking: Mapping[str, Any] = field(default_factory=dict)

    def shop(self, name: str) -> ShopConfig:
        for shop in self.shops:
            if shop.name == name:
                return shop
        raise KeyError(name)


class ConfigProblems(Exception):
    def __init__(self, problems: list[ConfigError]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class _Reader:
    """Collects problems instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ConfigError] = []

    def problem(self, key: str, reason: str) -> None:
        self.problems.append(ConfigError(self.file, key, reason))

    def get(self, table: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...],
            default: Any = None, required: bool = False) -> Any:
        if key not in table:
            if required:
                self.problem(f"{where}{key}", "is required")
            return default
        value = table[key]
        # bool is an int in Python; a TOML true is not a number here
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            self.problem(f"{where}{key}", f"expected {_kind_name(kind)}, got {type(value).__name__}")
            return default
        return value

    def duration(self, table: Mapping[str, Any], key: str, where: str,
                 default: timedelta) -> timedelta:
        if key not in table:
            return default
        try:
            return parse_duration(table[key])
        except ValueError as exc:
            self.problem(f"{where}{key}", str(exc))
            return default

    def unknown(self, table: Mapping[str, Any], known: set[str], where: str) -> None:
        for key in table:
            if key not in known:
                self.problem(f"{where}{key}", "unknown key")


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in _kinds(kind))


def load(path: Path | str = DEFAULT_CONFIG, *, known_platforms: Callable[[], set[str]] | None = None,
         environ: Mapping[str, str] | None = None, check_env: bool = True) -> Config:
    """Read and check a config file; raise ConfigProblems listing every problem."""
    path = Path(path)
    reader = _Reader(str(path))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigProblems([ConfigError(str(path), "-", "file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigProblems([ConfigError(str(path), "-", f"not valid TOML: {exc}")]) from None
    env = os.environ if environ is None else environ
    base = path.parent

    reader.unknown(raw, {"database", "rules", "secrets", "shops", "daemon", "inventory",
                         "orders", "alerts", "tracking"}, "")
    database = reader.get(raw, "database", "", dict, {})
    url = reader.get(database, "url", "database.", str, required=True) or "sqlite:///:memory:"
    url = _relative_sqlite(url, base)
    rules_file = base / reader.get(raw, "rules", "", str, "rules.toml")
    if not rules_file.is_file():
        reader.problem("rules", f"rules file {rules_file} not found")
    secrets_file = base / reader.get(raw, "secrets", "", str, "../var/secrets.json")

    daemon = _daemon(reader, reader.get(raw, "daemon", "", dict, {}))
    inventory = _inventory(reader, reader.get(raw, "inventory", "", dict, {}))
    orders_raw = reader.get(raw, "orders", "", dict, {})
    order_defaults = OrdersConfig()
    orders = OrdersConfig(
        overlap=reader.duration(orders_raw, "overlap", "orders.", order_defaults.overlap),
        backfill=reader.duration(orders_raw, "backfill", "orders.", order_defaults.backfill))

    platforms = known_platforms() if known_platforms else None
    shops: list[ShopConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(reader.get(raw, "shops", "", list, [])):
        where = f"shops[{index}]."
        if not isinstance(entry, dict):
            reader.problem(f"shops[{index}]", "expected a table")
            continue
        shop = _shop(reader, entry, where, platforms, env if check_env else None)
        if shop is None:
            continue
        if shop.name in seen:
            reader.problem(f"{where}name", f"duplicate shop name {shop.name!r}")
        seen.add(shop.name)
        shops.append(shop)

    alerts = reader.get(raw, "alerts", "", dict, {})
    sinks = tuple(reader.get(alerts, "sinks", "alerts.", list, []))
    tracking = reader.get(raw, "tracking", "", dict, {})
    if reader.problems:
        raise ConfigProblems(reader.problems)
    return Config(path=path, database_url=url, rules_file=rules_file, secrets_file=secrets_file,
                  shops=tuple(shops), daemon=daemon, inventory=inventory, orders=orders,
                  alert_sinks=sinks, tracking=tracking)


def _relative_sqlite(url: str, base: Path) -> str:
    """`sqlite:///var/x.db` is relative to the config file's folder's parent (the checkout),
    so the demo works from any working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base.parent / url[len(prefix):]).resolve())
    return url


def _daemon(reader: _Reader, table: Mapping[str, Any]) -> DaemonConfig:
    reader.unknown(table, {"listen", "node_name", "lease", "shutdown_grace"}, "daemon.")
    defaults = DaemonConfig()
    host, port = defaults.listen_host, defaults.listen_port
    listen = reader.get(table, "listen", "daemon.", str)
    if listen:
        try:
            host, port_text = listen.rsplit(":", 1)
            port = int(port_text)
        except ValueError:
            reader.problem("daemon.listen", f"{listen!r} is not host:port")
    return DaemonConfig(
        listen_host=host, listen_port=port,
        node_name=reader.get(table, "node_name", "daemon.", str, ""),
        lease=reader.duration(table, "lease", "daemon.", defaults.lease),
        shutdown_grace=reader.duration(table, "shutdown_grace", "daemon.",
                                       defaults.shutdown_grace))


def _inventory(reader: _Reader, table: Mapping[str, Any]) -> InventoryConfig:
    reader.unknown(table, {"mode", "online_warehouses", "drift_threshold"}, "inventory.")
    mode = reader.get(table, "mode", "inventory.", str, "shared")
    if mode not in ("shared", "strict"):
        reader.problem("inventory.mode", f"{mode!r} is not 'shared' or 'strict'")
    warehouses = reader.get(table, "online_warehouses", "inventory.", list, ["MAIN"])
    threshold = reader.get(table, "drift_threshold", "inventory.", int, 2)
    return InventoryConfig(mode=mode, online_warehouses=tuple(str(w) for w in warehouses),
                           drift_threshold=threshold)


_SHOP_KEYS = {"name", "platform", "sandbox", "base_url", "credentials", "extra_credentials",
              "sync_ratio", "safety_stock", "max_listed", "zero_below", "intervals",
              "promo_mode", "enabled", "options", "modified_lag"}


def _shop(reader: _Reader, entry: Mapping[str, Any], where: str, platforms: set[str] | None,
          env: Mapping[str, str] | None) -> ShopConfig | None:
    reader.unknown(entry, _SHOP_KEYS, where)
    name = reader.get(entry, "name", where, str, required=True)
    platform = reader.get(entry, "platform", where, str, required=True)
    if name is None or platform is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        reader.problem(f"{where}name", f"{name!r}: use letters, digits, '-', '_' or '.'")
    if platforms is not None and platform not in platforms:
        reader.problem(f"{where}platform",
                       f"unknown platform {platform!r} (installed: {', '.join(sorted(platforms))})")
    sandbox = reader.get(entry, "sandbox", where, bool, False)
    credentials = reader.get(entry, "credentials", where, dict, {})
    extra = reader.get(entry, "extra_credentials", where, dict, {})
    for key, var in {**credentials, **extra}.items():
        if not isinstance(var, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", var):
            reader.problem(f"{where}credentials.{key}",
                           f"{var!r} must name an environment variable (e.g. TAOBAO_APP_SECRET)")
        elif env is not None and not sandbox and var not in env:
            reader.problem(f"{where}credentials.{key}", f"environment variable {var} is not set")
    if not sandbox:
        for key in ("app_key", "app_secret"):
            if key not in credentials:
                reader.problem(f"{where}credentials.{key}", "is required for a real shop")
    ratio = reader.get(entry, "sync_ratio", where, (int, float), 1.0)
    if not 0 < ratio <= 1:
        reader.problem(f"{where}sync_ratio", f"{ratio} must be in (0, 1]")
    safety = reader.get(entry, "safety_stock", where, int, 0)
    max_listed = reader.get(entry, "max_listed", where, int, None)
    zero_below = reader.get(entry, "zero_below", where, int, 0)
    for key, value in (("safety_stock", safety), ("zero_below", zero_below),
                       ("max_listed", max_listed)):
        if value is not None and value < 0:
            reader.problem(f"{where}{key}", f"{value} must not be negative")
    intervals_raw = reader.get(entry, "intervals", where, dict, {})
    reader.unknown(intervals_raw, set(Intervals.__dataclass_fields__), f"{where}intervals.")
    defaults = Intervals()
    intervals = Intervals(**{
        key: reader.duration(intervals_raw, key, f"{where}intervals.", getattr(defaults, key))
        for key in Intervals.__dataclass_fields__})
    return ShopConfig(
        name=name, platform=platform, sandbox=sandbox,
        base_url=reader.get(entry, "base_url", where, str, None),
        credentials=credentials, extra_credentials=extra,
        publish=PublishRules(sync_ratio=float(ratio), safety_stock=safety, max_listed=max_listed,
                             zero_below=zero_below),
        intervals=intervals, promo_mode=reader.get(entry, "promo_mode", where, bool, False),
        enabled=reader.get(entry, "enabled", where, bool, True),
        options=reader.get(entry, "options", where, dict, {}),
        modified_lag=reader.duration(entry, "modified_lag", where, timedelta(0))
        if "modified_lag" in entry else None)
