"""Django's SQLite backend with a health check that can fail (see `base`)."""
