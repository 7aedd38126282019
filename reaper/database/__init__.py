"""The database boundary: engine creation, the reflected table, locks, server load, our own errors."""
