"""The long-running daemon: its schedule loop, metrics, HTTP endpoints and status page."""
