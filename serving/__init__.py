"""Serving: TF Serving configuration, clients and a compatible local server."""
