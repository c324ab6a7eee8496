"""Built-in strategies; importing this package registers them."""
