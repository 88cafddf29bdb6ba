"""Kuaishou e-commerce (快手电商开放平台): orders, delta stock, shipping, tokens, AES pushes."""
