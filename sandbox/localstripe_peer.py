"""Run the real localstripe peer on loopback with private state: ``python -m sandbox.localstripe_peer``.

localstripe 1.15 has no host option (it binds every interface, IPv4 and IPv6) and pickles its whole
store to the hard-coded ``/tmp/localstripe.pickle`` after every write: two instances clobber each
other, and each write costs O(store size). This wrapper serves the same aiohttp app on
``--host`` (default 127.0.0.1) and keeps the state in memory, or in ``--state-dir`` when given.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state-dir", default=None, help="persist the store here (default: memory only)")
    args = parser.parse_args(argv)

    from aiohttp import web
    from localstripe import resources, server

    target = Path(args.state_dir) / "localstripe.pickle" if args.state_dir else None

    def dump(self: Any) -> None:
        if target is not None:
            with target.open("wb") as f:
                pickle.dump(dict(self), f, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump  # type: ignore[method-assign]
    web.run_app(server.app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
