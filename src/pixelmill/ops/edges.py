"""edges ops."""
