"""color ops."""
