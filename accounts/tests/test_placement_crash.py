"""Thor killed with SIGKILL while a live placement is at the broker, then started again: the order the
dead process left PENDING is settled from the broker's book to what the broker holds, never sent again."""

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from accounts.models import Order
from accounts.services import unknown_orders_settle
from accounts.tests.conftest import order_body
from accounts.tests.test_consumers import access_token
from accounts.tests.test_streams_served import free_port, link_kite, start_served, stop_served
from brokers.sandbox.testing import start_sandbox
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

BROKER_LATENCY_MS = 3000


def test_a_placement_cut_by_sigkill_settles_to_the_brokers_order_after_a_restart(alice, settings):
    port = free_port()
    http = f"http://127.0.0.1:{port}"
    app = {"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": f"{http}/api/auth/broker/callback"}
    with start_sandbox(apps=[app], tick_seconds=None) as kite:
        settings.THOR_KITE_API_ROOT = kite.url
        environment = {"THOR_KITE_API_ROOT": kite.url, "THOR_KITE_LOGIN_URL": f"{kite.url}/connect/login"}
        headers = {"Authorization": f"Bearer {access_token(alice)}", "Idempotency-Key": "crash-1"}
        server = start_served(port, **environment)
        try:
            account_id = link_kite(http, headers)
            requests.post(f"{kite.url}/_sandbox/prices", json={"NSE:INFY": 1500.0}, timeout=5).raise_for_status()
            fault = {"broker": "kite", "kind": "latency", "ms": BROKER_LATENCY_MS, "path": "/orders/regular"}
            requests.post(f"{kite.url}/_sandbox/faults", json={**fault, "count": 1}, timeout=5).raise_for_status()
            body = order_body(order_type="LIMIT", price="1400.00")

            # The request is at the broker (its latency); the server dies before any answer.
            with pytest.raises(requests.Timeout):
                requests.post(f"{http}/api/accounts/{account_id}/orders", json=body, headers=headers, timeout=1)
            stop_served(server, kill=True)

            left = Order.objects.get(account_id=account_id, idempotency_key="crash-1")
            assert (left.status, left.broker_order_id) == ("PENDING", "")
            assert left.send_started_at is not None  # stored before the send: the reconciler's clue

            server = start_served(port, **environment)
            # A retry of the key while the send may still be at the broker waits; it never sends again.
            retried = requests.post(f"{http}/api/accounts/{account_id}/orders", json=body, headers=headers, timeout=30)
            assert retried.status_code == 409 and retried.json()["code"] == "idempotency_in_progress"
            assert retried.headers["Retry-After"] == "1"
            kite_orders = kite.state.kite.accounts["AB1234"].orders
            deadline = timezone.now() + timedelta(seconds=BROKER_LATENCY_MS / 1000 + 5)
            while not kite_orders and timezone.now() < deadline:
                time.sleep(0.05)  # the sandbox enters the order once its latency has passed

            # The settle task (the beat's, here run in the test's process) after the orphan horizon.
            later = timezone.now() + timedelta(seconds=settings.THOR_PLACEMENT_ORPHAN_SECONDS + 1)
            unknown_orders_settle(now=later)

            settled = Order.objects.get(pk=left.pk)
            (broker_order_id,) = kite_orders
            assert (settled.status, settled.broker_order_id) == ("OPEN", broker_order_id)
            again = requests.post(f"{http}/api/accounts/{account_id}/orders", json=body, headers=headers, timeout=30)
            assert again.status_code == 201 and again.json()["broker_order_id"] == broker_order_id
            assert len(kite_orders) == 1  # never sent twice
        finally:
            stop_served(server)
