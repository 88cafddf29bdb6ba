"""Pinduoduo (拼多多开放平台, `pdd.*`): orders, goods stock/price/shelf, logistics, tokens."""

from connectors.pinduoduo.connector import PinduoduoConnector

__all__ = ["PinduoduoConnector"]
