"""The engine's routers: ``engine`` (who it is, what it offers) and ``jobs`` (the protection queue)."""
