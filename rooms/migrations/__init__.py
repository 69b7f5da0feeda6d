"""Alembic migrations of the durable store, applied at start-up by ``SqlStore.start``."""
