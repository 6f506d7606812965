"""The application layer: what the command line (``ltc.cli``) and the Prefect flows (``flows``) share.

Plain Python, no typer or rich (and Prefect only for a ``{secret: ...}`` credential):
configuration (:mod:`ltc.app.config`), the store and the sources of ltc.yaml
(:mod:`ltc.app.runtime`), the stages of the main job (:mod:`ltc.app.pipeline`), the ERP push
(:mod:`ltc.app.push`), what ``ltc status`` and ``ltc exceptions`` read (:mod:`ltc.app.status`,
:mod:`ltc.app.exceptions`), the demo and world replay (:mod:`ltc.app.demo`), the background
emulators (:mod:`ltc.app.emulators`) and the whole store schema (:mod:`ltc.app.schema`).
See docs/architecture.md.
"""
