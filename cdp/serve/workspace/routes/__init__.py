"""The workspace's pages, one module per page family, each `add_routes(app, web)`; app.py mounts
them in ROUTES order with the shared request helpers (web.Web)."""
