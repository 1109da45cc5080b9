"""measure ops."""
