"""Contract case: the Stripe connector against the Stripe emulator (sandbox/stripe.py) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager

from connectors.governor import RateGovernor
from connectors.http import RetryPolicy
from connectors.stripe import StripeConnector
from sandbox.server import serve
from sandbox.stripe import StripeEmulator, create_app
from tests.contract.runner import ContractCase

KEY = "sk_test_contract_51HxYzQ2eZvKYlo2C0ntr4ct"
WRONG = "sk_test_contract_wrong_key_0000000000000"


@contextmanager
def case() -> Iterator[ContractCase]:
    emu = StripeEmulator(seed=3, size=8, api_key=KEY)
    with serve(create_app(emulator=emu)) as server:
        def connector(key: str) -> StripeConnector:
            return StripeConnector("stripe", api_key=key, base_url=server.url, clock=emu.now,
                                   policy=RetryPolicy(max_attempts=2, sleep=lambda s: None),
                                   governor=RateGovernor("stripe-contract", capacity=1000, interval_s=1.0))
        with closing(connector(KEY)) as good, closing(connector(WRONG)) as bad:
            yield ContractCase("stripe", good, secrets=[KEY, WRONG], bad_credentials_connector=bad)
