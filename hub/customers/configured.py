"""The customer service and the external CRM as hub.yaml's ``customers:`` configures them."""

from __future__ import annotations

import aiohttp

from hub.customers.providers import HttpProvider
from hub.customers.repository import Customers
from hub.customers.valuation import Thresholds
from hub.settings import HubSettings
from hub.store.store import Store


def customer_service(settings: HubSettings, store: Store) -> Customers:
    """Import, merge and valuation of customers (also what ``channelhub customers`` uses)."""
    options = settings.customers
    return Customers(
        store,
        default_region=options.default_region,
        thresholds=Thresholds(
            window_days=options.value_window / 86400,
            a_share=options.abc_a_share,
            b_share=options.abc_b_share,
        ),
    )


def context_provider(settings: HubSettings, session: aiohttp.ClientSession) -> HttpProvider | None:
    """The external CRM configured under customers.provider, if any."""
    options = settings.customers.provider
    if options is None:
        return None
    return HttpProvider(
        url=options.url,
        headers={name: value.get_secret_value() for name, value in options.headers.items()},
        fields=options.fields,
        session=session,
        timeout=options.timeout,
        wait=options.wait,
        ttl=options.ttl,
        failures_to_open=options.failures_to_open,
        open_for=options.open_for,
    )
