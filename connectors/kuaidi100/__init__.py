"""Kuaidi100 (快递100) parcel-tracking provider: real-time query, subscription, signed callbacks."""
