"""Dewu (得物开放平台, DOP): a bidding/consignment marketplace; listings are bids on platform SKUs."""
