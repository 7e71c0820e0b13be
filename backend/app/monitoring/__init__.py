"""Health checks, system metrics and the daily statistics report."""
