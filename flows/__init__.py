"""Prefect flows: the edge where schedules, retries and run history meet the application layer."""

import canonical  # noqa: F401  (first: it sets Polars' allocator up before Polars loads)
