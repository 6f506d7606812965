"""The notifier's memory, registered on :data:`canonical.tables.metadata`.

``notify_sent``: one row per (target, key) the notifier delivered — ``key`` is an exception
fingerprint (a new high-severity exception is announced once per target, never twice) or
``digest:<date>`` (one finance digest per target and UTC day). ``target`` is a hash of the target's
resolved URL, never the URL (webhook keys are secrets).
"""

from __future__ import annotations

import sqlalchemy as sa

from canonical.tables import UTCDateTime, metadata

notify_sent = sa.Table(
    "notify_sent",
    metadata,
    sa.Column("target", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=False),
)
