"""The ltc command and its application layer."""

import canonical  # noqa: F401  (first: it sets Polars' allocator up before Polars loads)
