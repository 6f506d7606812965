"""The canonical LTC model and its store.

Importing this package sets Polars' allocator up for the data path (see :data:`ALLOCATOR`): every entry point
that reaches Polars (the ``ltc`` command, the Prefect flows, the reconcile engine, the benchmarks) imports it
first, so the setting is in place when Polars loads, whichever module imports Polars.
"""

from __future__ import annotations

import os

#: Polars' allocator (jemalloc) keeps freed pages ~10 s in one arena per thread, so a run that frees and
#: reallocates whole tables holds far more than its live data: ``ltc reconcile`` of 1M chains peaked at 2.6 GB
#: without this and 1.5 GB with it, in the same time. One arena, freed pages handed back after 5 s, and
#: transparent huge pages (fewer page faults when they come back; a one-bucket reconciliation, whose memory
#: is nearly all new, runs without them: :func:`canonical.interpreter.no_huge_pages`). jemalloc reads it
#: once, when Polars loads; a value the environment already has (``_RJEM_MALLOC_CONF``) is kept.
ALLOCATOR = "thp:always,narenas:1,dirty_decay_ms:5000,muzzy_decay_ms:0"

os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR)

#: OpenBLAS (loaded with scipy, whose sparse connected components partition a large reconciliation) starts a thread
#: per core that spins waiting for work: nothing on the data path multiplies matrices, and on 2 cores the spinning
#: thread took ~0.1 s of CPU from a 100k-chain ``ltc reconcile`` (perf). One thread: no spinning. Kept if set.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

