"""WooCommerce connector: REST API v3 (orders, products and variations, batch stock) and
the Shipment Tracking extension, signed webhooks."""
