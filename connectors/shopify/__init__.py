"""Shopify connector: Admin GraphQL API (orders, variants, inventory, fulfilment orders),
cost-based throttling, webhooks, expiring offline tokens."""
