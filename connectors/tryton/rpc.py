"""A small Tryton JSON-RPC client over httpx, with session login.

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
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from canonical.errors import LtcError
from connectors.tryton import codec


class TrytonError(LtcError):
    """A Tryton call failed; the message says which call and what Tryton answered."""


class TrytonAuthError(TrytonError):
    """Login refused, or the session expired; check the tryton source's credentials."""

    exit_code = 2


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


def _error_from(method: str, error: Any) -> TrytonError:
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


Transport = Callable[[httpx.Request], httpx.Response]


class TrytonClient:
    """One logged-in session on one Tryton database.

    ``send`` is how requests reach the server: by default ``httpx.Client.send``; the connector
    base's retrying client can be passed instead. Write calls (``create``, ``write``, buttons,
    wizards) are never retried by this class.
    """

    def __init__(
        self,
        base_url: str,
        database: str,
        *,
        timeout: float = 120.0,
        http: httpx.Client | None = None,
        send: Callable[[httpx.Request], httpx.Response] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.database = database
        self.http = http or httpx.Client(timeout=timeout, headers={"Content-Type": "application/json"})
        self._send = send or self.http.send
        self._ids = itertools.count(1)
        self._auth: str | None = None
        self.user_id: int | None = None
        self.context: dict[str, Any] = {}

    # --- transport ------------------------------------------------------------------------------
    def _post(self, url: str, method: str, params: Sequence[Any]) -> Any:
        body = codec.dumps({"id": next(self._ids), "method": method, "params": list(params)})
        headers = {"Content-Type": "application/json"}
        if self._auth:
            headers["Authorization"] = self._auth
        request = self.http.build_request("POST", url, content=body, headers=headers)
        try:
            response = self._send(request)
        except httpx.TransportError as exc:
            raise TrytonError(f"cannot reach Tryton at {self.base_url} ({type(exc).__name__}: {exc})") from None
        if response.status_code == 401:
            raise TrytonAuthError(
                f"Tryton {method}: HTTP 401 (login refused or session expired; "
                "check the tryton source's user and password)"
            )
        if response.status_code == 403:
            raise TrytonError(f"Tryton {method}: HTTP 403 (the method is not callable over RPC, or access denied)")
        if response.status_code == 404:
            raise TrytonError(f"Tryton {method}: HTTP 404 (no database {self.database!r} at {self.base_url}?)")
        if response.status_code != 200:
            raise TrytonError(f"Tryton {method}: HTTP {response.status_code}: {response.text[:200]}")
        payload = codec.loads(response.content)
        if payload.get("error") is not None:
            raise _error_from(method, payload["error"])
        return payload.get("result")

    @property
    def db_url(self) -> str:
        return f"{self.base_url}/{self.database}/rpc/"

    # --- session ----------------------------------------------------------------------------------
    def server_version(self) -> str:
        return str(self._post(f"{self.base_url}/rpc/", "common.server.version", []))

    def login(self, login: str, password: str, *, language: str = "en") -> None:
        """Open a session and load the user's context (company, language...)."""
        result = self._post(self.db_url, "common.db.login", [login, {"password": password}, language])
        user_id, session = result[0], result[1]
        token = base64.b64encode(f"{login}:{user_id}:{session}".encode()).decode()
        self._auth = f"Session {token}"
        self.user_id = int(user_id)
        self.context = self.call("model.res.user.get_preferences", True)

    def logout(self) -> None:
        if self._auth:
            try:
                self._post(self.db_url, "common.db.logout", [])
            finally:
                self._auth = None

    def close(self) -> None:
        self.logout()
        self.http.close()

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
        return self._post(self.db_url, method, [*params, ctx])

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
