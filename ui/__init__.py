"""``ltc ui``: the exception work queue, a small server-rendered web application on the store."""
