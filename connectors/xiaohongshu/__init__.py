"""Xiaohongshu (小红书开放平台, ark.xiaohongshu.com): one RPC endpoint, md5-signed system params."""
