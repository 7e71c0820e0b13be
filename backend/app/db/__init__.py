"""The database: declarative base and column types, engines and sessions, prepared
statements, migrations. Models live in their domain packages; `all_models` gathers them."""
