"""GDOS master: REST + WebSocket API, metadata in SQLite/PostgreSQL, packages, orchestration."""
