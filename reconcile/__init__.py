"""The reconciliation engine: canonical rows in, links, exceptions and KPIs out."""

import canonical  # noqa: F401  (first: it sets Polars' allocator up before Polars loads)
