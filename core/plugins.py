"""The connector registry: built-in connectors and any installed under the entry-point group
`erpsync.connectors`, found the same way. A plugin that fails to load is reported by name
and never takes the others down."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from core.connector import Connector, TrackingProvider

GROUP = "erpsync.connectors"

# Built-ins are also declared as entry points in pyproject.toml; this list keeps them
# available when erpsync runs from a checkout that was not pip-installed.
BUILTIN = {
    "taobao": "connectors.taobao.connector:TaobaoConnector",
    "pinduoduo": "connectors.pinduoduo.connector:PinduoduoConnector",
    "jd": "connectors.jd.connector:JdConnector",
    "douyin": "connectors.douyin.connector:DouyinConnector",
    "kuaishou": "connectors.kuaishou.connector:KuaishouConnector",
    "xiaohongshu": "connectors.xiaohongshu.connector:XiaohongshuConnector",
    "dewu": "connectors.dewu.connector:DewuConnector",
    "shopify": "connectors.shopify.connector:ShopifyConnector",
    "woocommerce": "connectors.woocommerce.connector:WooCommerceConnector",
    "kuaidi100": "connectors.kuaidi100.connector:Kuaidi100Provider",
}

Plugin = type[Connector] | type[TrackingProvider]


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    plugin: Plugin
    origin: str  # "built-in" or the distribution that installed it
    version: str


@dataclass(frozen=True, slots=True)
class Broken:
    name: str
    origin: str
    error: str


class Registry:
    def __init__(self) -> None:
        self.plugins: dict[str, Registered] = {}
        self.broken: list[Broken] = []

    @classmethod
    def discover(cls) -> Registry:
        registry = cls()
        seen: set[str] = set()
        for point in entry_points(group=GROUP):
            seen.add(point.name)
            origin = _origin(point)
            registry._load(point.name, point, origin)
        for name, target in BUILTIN.items():
            if name not in seen:
                registry._load(name, EntryPoint(name, target, GROUP), "built-in")
        return registry

    def _load(self, name: str, point: EntryPoint, origin: str) -> None:
        try:
            plugin = point.load()
            if not isinstance(plugin, type) or not issubclass(plugin, Connector | TrackingProvider):
                raise TypeError(f"{point.value} is not a Connector or TrackingProvider class")
            if plugin.platform != name:
                raise TypeError(f"entry point {name!r} loads platform {plugin.platform!r}")
        except Exception as exc:  # a broken plugin must not take the others down
            self.broken.append(Broken(name, origin, f"{type(exc).__name__}: {exc}"))
            return
        self.plugins[name] = Registered(name, plugin, origin, plugin.version)

    def connector(self, platform: str) -> type[Connector]:
        found = self.plugins[platform].plugin
        if not issubclass(found, Connector):
            raise KeyError(f"{platform} is a tracking provider, not a shop platform")
        return found

    def tracking_provider(self, name: str) -> type[TrackingProvider]:
        found = self.plugins[name].plugin
        if not issubclass(found, TrackingProvider):
            raise KeyError(f"{name} is not a tracking provider")
        return found

    def platforms(self) -> set[str]:
        return {n for n, r in self.plugins.items() if issubclass(r.plugin, Connector)}


def _origin(point: EntryPoint) -> str:
    dist = point.dist
    if dist is None:
        return "entry point"
    if dist.name == "erpsync":
        return "built-in"
    return f"{dist.name} {dist.version}"
