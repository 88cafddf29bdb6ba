"""Built-in platform connectors."""
