"""What an operator does about a source that failed or paused: one hint per kind of problem, shared by
the CLI, the pipeline's result (and so the notifications) and the Prefect flows."""

from __future__ import annotations

from connectors.errors import AuthenticationError, NotFound, PermissionDenied

HINTS = {
    AuthenticationError: "check the credentials of sources.{source} in ltc.yaml (`ltc config check`), "
                         "then run the sync-source deployment for {source}",
    PermissionDenied: "give the API user of {source} read access to the objects it syncs",
    NotFound: "check sources.{source}.base_url (and the object names) in ltc.yaml",
}
PAUSED_HINT = "nothing to do: the vendor's quota resets and the next run resumes from the saved state"


def hint_for(source: str, exc: BaseException | None = None, status: str | None = None) -> str | None:
    """What an operator does about a source that failed (by its error) or paused."""
    if status == "paused":
        return PAUSED_HINT
    for kind, hint in HINTS.items():
        if isinstance(exc, kind):
            return hint.format(source=source)
    return None
