"""Health checks, system metrics and the daily statistics report.

The `daily_stats` model is imported here so that any use of the package registers the table
in `Base.metadata` (migration checks compare the metadata with the migrated schema).
"""

from app.monitoring import models as models
