"""A small Tryton JSON-RPC client on the shared HTTP layer (httpx + tenacity), with session login.

Protocol facts (checked against trytond 8.2):

* ``POST <base>/<db>/rpc/`` for database calls, ``POST <base>/rpc/`` for server calls
  (``common.server.version``). The pre-7 paths ``/`` and ``/<db>/`` answer 405.
* Login once with ``common.db.login(login, {"password": ...}, lang)`` -> ``[user_id, session, bus]``
  and send ``Authorization: Session base64("login:user_id:session")``. Password auth on every call
  costs 200-400 ms (argon2), a session costs nothing.
* The **context dict is the last positional parameter** of every model and wizard call (422
  "Missing context argument" otherwise). It must carry ``company``/``companies`` before any
  company-bound record can be created, so the user's preferences are fetched after login.
* Errors come back in a 200 envelope: ``{"error": ["UserError", [message, description, domain]]}``.
  A ``UserWarning`` must be acknowledged by creating ``res.user.warning`` and calling again.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

import httpx

from connectors.errors import AuthenticationError, ConnectorError
from connectors.http import HttpClient, RetryPolicy
from connectors.tryton import codec

# Calls that change nothing: retried on 429/5xx/transport errors. Everything else (create, write,
# buttons, wizards) is sent once: a retry after a lost response could create a second sale.
_READS = frozenset({"search_read", "search", "search_count", "read", "fields_get", "get_preferences",
                    "common.server.version", "common.db.login", "common.db.logout"})


class TrytonError(ConnectorError):
    """A Tryton call failed; the message says which call and what Tryton answered."""


class TrytonAuthError(AuthenticationError):
    """Login refused, or the session expired; check the tryton source's credentials."""


class TrytonUserError(TrytonError):
    """Tryton refused the call for a business reason (validation, access rule, missing value)."""

    def __init__(self, method: str, message: str, description: str = "") -> None:
        self.method = method
        self.message = message
        self.description = description
        super().__init__(f"Tryton refused {method}: {message}" + (f" ({description})" if description else ""))


class TrytonUserWarning(TrytonError):
    """Tryton asked for a confirmation (a ``UserWarning``); ``name`` is the warning key."""

    def __init__(self, method: str, name: str, message: str) -> None:
        self.method = method
        self.name = name
        self.message = message
        super().__init__(f"Tryton warning on {method}: {message}")


class TrytonConcurrencyError(TrytonError):
    """The record was modified by someone else since it was read (``ConcurrencyException``)."""


def _error_from(method: str, error: Any) -> ConnectorError:
    """Map Tryton's ``error`` member (``[type, args]`` or ``[str, traceback]``) to an exception."""
    if isinstance(error, list) and error and isinstance(error[0], str):
        kind, args = error[0], (error[1] if len(error) > 1 else [])
        args = args if isinstance(args, list) else [args]
        if kind == "UserWarning":
            # args: [name, message, description]
            return TrytonUserWarning(method, str(args[0]), str(args[1]) if len(args) > 1 else "")
        if kind == "UserError":
            return TrytonUserError(method, str(args[0]) if args else "", str(args[1]) if len(args) > 1 and args[1] else "")
        if kind == "ConcurrencyException":
            return TrytonConcurrencyError(f"Tryton {method}: {args[0] if args else 'record changed meanwhile'}")
        if kind in ("LoginException", "AccessError") or "NotLogged" in kind:
            return TrytonAuthError(f"Tryton {method}: {kind} {args[0] if args else ''}".strip())
        # Unexpected server exception: [str(exc), traceback]; keep the first line only.
        return TrytonError(f"Tryton {method} failed on the server: {kind.splitlines()[0][:300]}")
    return TrytonError(f"Tryton {method} failed: {str(error)[:300]}")


class TrytonClient:
    """One logged-in session on one Tryton database, over the shared retry layer.

    If the session expires (Tryton answers 401, e.g. for calls that need a "fresh" session such as
    ``account.invoice.post`` once ``[session] timeout`` has passed), the client logs in again once
    and repeats the call.
    """

    def __init__(self, base_url: str, database: str, *, system: str = "tryton", timeout: float = 120.0,
                 policy: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None,
                 verify: Any = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.database = database
        self.system = system
        self._reads = HttpClient(system, self.base_url, timeout=timeout, policy=policy, transport=transport,
                                 verify=verify)
        self._writes = HttpClient(system, self.base_url, timeout=timeout, policy=RetryPolicy(max_attempts=1),
                                  transport=transport, verify=verify)
        self._ids = itertools.count(1)
        self._auth: str | None = None
        self._credentials: tuple[str, str, str] | None = None
        self.user_id: int | None = None
        self.context: dict[str, Any] = {}

    # --- transport ------------------------------------------------------------------------------
    def _post(self, path: str, method: str, params: Sequence[Any]) -> Any:
        body = codec.dumps({"id": next(self._ids), "method": method, "params": list(params)})
        headers = {"Content-Type": "application/json"}
        if self._auth:
            headers["Authorization"] = self._auth
        http = self._reads if (method in _READS or method.rsplit(".", 1)[-1] in _READS) else self._writes
        try:
            _response, payload = http.call("POST", path, codec.loads, content=body, headers=headers)
        except AuthenticationError:
            raise TrytonAuthError(
                f"Tryton {method}: login refused or session expired (HTTP 401); "
                "check the tryton source's login and password"
            ) from None
        except ConnectorError as exc:
            if exc.status == 403:
                raise TrytonError(f"Tryton {method}: HTTP 403 (not callable over RPC, or access denied)",
                                  status=403) from None
            if exc.status == 404:
                raise TrytonError(f"Tryton {method}: HTTP 404 (no database {self.database!r} at {self.base_url}?)",
                                  status=404) from None
            raise
        if not isinstance(payload, dict):
            raise TrytonError(f"Tryton {method}: the server did not answer JSON-RPC (check base_url)")
        if payload.get("error") is not None:
            raise _error_from(method, payload["error"])
        return payload.get("result")

    @property
    def db_path(self) -> str:
        return f"/{self.database}/rpc/"

    # --- session ----------------------------------------------------------------------------------
    def server_version(self) -> str:
        return str(self._post("/rpc/", "common.server.version", []))

    def login(self, login: str, password: str, *, language: str = "en") -> None:
        """Open a session and load the user's context (company, language...)."""
        self._auth = None
        result = self._post(self.db_path, "common.db.login", [login, {"password": password}, language])
        user_id, session = result[0], result[1]
        token = base64.b64encode(f"{login}:{user_id}:{session}".encode()).decode()
        self._auth = f"Session {token}"
        self.user_id = int(user_id)
        self._credentials = (login, password, language)
        self.context = self.call("model.res.user.get_preferences", True)

    def logout(self) -> None:
        if self._auth:
            try:
                self._post(self.db_path, "common.db.logout", [])
            finally:
                self._auth = None

    def close(self) -> None:
        with contextlib.suppress(ConnectorError):  # the session is gone either way
            self.logout()
        self._reads.close()
        self._writes.close()

    def __enter__(self) -> TrytonClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- calls ----------------------------------------------------------------------------------
    def call(self, method: str, *params: Any, context: dict[str, Any] | None = None) -> Any:
        """Call ``method`` with ``params`` and the session context as the last parameter."""
        ctx = dict(self.context)
        if context:
            ctx.update(context)
        try:
            return self._post(self.db_path, method, [*params, ctx])
        except TrytonAuthError:
            if self._credentials is None or self._auth is None:
                raise
            self.login(self._credentials[0], self._credentials[1], language=self._credentials[2])  # expired or not fresh enough: one new session, one retry
            return self._post(self.db_path, method, [*params, ctx])

    def call_acknowledging(self, method: str, *params: Any, max_warnings: int = 5) -> Any:
        """Call, acknowledging each ``UserWarning`` the way the Tryton client does, then retry."""
        for _ in range(max_warnings + 1):
            try:
                return self.call(method, *params)
            except TrytonUserWarning as warning:
                self.create("res.user.warning", [{"user": self.user_id, "name": warning.name, "always": False}])
        raise TrytonError(f"Tryton {method}: still warning after {max_warnings} acknowledgements")

    def model(self, model: str, method: str, *params: Any, context: dict[str, Any] | None = None) -> Any:
        return self.call(f"model.{model}.{method}", *params, context=context)

    def search_read(
        self,
        model: str,
        domain: list[Any],
        fields: Sequence[str],
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        context: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return list(
            self.model(
                model, "search_read", domain, offset, limit,
                [list(o) for o in order] if order else None, list(fields), context=context,
            )
        )

    def search(
        self,
        model: str,
        domain: list[Any],
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
    ) -> list[int]:
        return list(self.model(model, "search", domain, offset, limit, [list(o) for o in order] if order else None))

    def search_count(self, model: str, domain: list[Any]) -> int:
        return int(self.model(model, "search_count", domain))

    def read(self, model: str, ids: Sequence[int], fields: Sequence[str]) -> list[dict[str, Any]]:
        return list(self.model(model, "read", list(ids), list(fields)))

    def create(self, model: str, values: Sequence[dict[str, Any]]) -> list[int]:
        return list(self.model(model, "create", list(values)))

    def write(self, model: str, ids: Sequence[int], values: dict[str, Any]) -> None:
        self.model(model, "write", list(ids), values)

    def delete(self, model: str, ids: Sequence[int]) -> None:
        self.model(model, "delete", list(ids))

    def button(self, model: str, name: str, ids: Sequence[int]) -> Any:
        """A workflow button (``quote``, ``confirm``, ``post``...), acknowledging warnings."""
        return self.call_acknowledging(f"model.{model}.{name}", list(ids))

    def wizard(
        self, name: str, steps: Sequence[tuple[str, dict[str, Any]]], *, context: dict[str, Any] | None = None
    ) -> list[Any]:
        """Run a wizard: create a session, execute ``(state, data)`` steps in order, delete it.

        ``context`` carries ``active_model``/``active_id(s)`` for wizards that act on records.
        """
        wiz_id, _start, _end = self.call(f"wizard.{name}.create", context=context)
        results = []
        try:
            for state, data in steps:
                results.append(self.call(f"wizard.{name}.execute", wiz_id, data, state, context=context))
        finally:
            self.call(f"wizard.{name}.delete", wiz_id, context=context)
        return results
