"""What ``ltc status`` shows, as data: the open exceptions by code (the streams are ``Store.stream_states``)."""

from __future__ import annotations

import sqlalchemy as sa

from canonical.store import Store
from reconcile.tables import recon_exception as ex


def open_exceptions(store: Store) -> dict[str, int]:
    """Exception code -> how many are not resolved, in code order."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(ex.c.code, sa.func.count()).where(ex.c.status != "resolved")
                            .group_by(ex.c.code).order_by(ex.c.code))
        return {code: int(n) for code, n in rows}
