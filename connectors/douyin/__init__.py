"""Douyin Shop (抖店开放平台): orders, stock, shipping, tokens and message pushes."""
