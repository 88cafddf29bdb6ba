"""Taobao / Tmall Open Platform (TOP) connector: client, mapping, connector and sandbox."""
