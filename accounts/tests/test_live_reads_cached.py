"""A live Kite account's reads served from the cache answer what its snapshot answers."""

from decimal import Decimal

import pytest

from accounts.tests import test_live_accounts
from accounts.tests.conftest import place
from accounts.tests.test_live_accounts import resting_limit, url

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

live = test_live_accounts.live
trading = test_live_accounts.trading


class TestCachedReadAnswers:
    """A read served from the cache answers what serializing its snapshot answers, and an order renews both."""

    def test_a_cached_read_is_the_serialized_snapshot(self, alice_client, live):
        from rest_framework.renderers import JSONRenderer

        from accounts.api.serializers import PositionsOutputSerializer
        from thor import snapshots

        first = alice_client.get(url(live, "/positions"))
        second = alice_client.get(url(live, "/positions"))

        snapshot = snapshots.peek(snapshots.key("acme", live.pk, "positions"))
        body = {"account_id": live.pk, "source": "cache", "as_of": snapshot.as_of, "data": snapshot.data}
        assert second.content == JSONRenderer().render(PositionsOutputSerializer(body).data)
        assert second.json() == {**first.json(), "source": "cache"}

    def test_after_an_order_the_next_read_shows_the_new_numbers(self, alice_client, sandbox, trading):
        before = alice_client.get(url(trading, "/positions")).json()
        assert alice_client.get(url(trading, "/positions")).json()["source"] == "cache"
        position = sandbox.state.kite.accounts["AB1234"].positions["net"][0]
        position["quantity"] = 4321

        assert place(alice_client, account=trading.pk, **resting_limit()).status_code == 201
        after = alice_client.get(url(trading, "/positions")).json()
        cached = alice_client.get(url(trading, "/positions")).json()

        assert after["source"] == "live" and after["as_of"] > before["as_of"]
        mine = next(p for p in after["data"] if p["tradingsymbol"] == position["tradingsymbol"])
        assert Decimal(mine["quantity"]) == 4321
        assert cached == {**after, "source": "cache"}

    def test_a_cached_read_costs_no_query(self, alice_client, live, django_assert_num_queries):
        alice_client.get(url(live, "/positions"))

        # The user (JWT) and the account with its session's state come from the short read cache too.
        with django_assert_num_queries(0):
            assert alice_client.get(url(live, "/positions")).json()["source"] == "cache"

    def test_the_read_lookup_finds_what_account_get_finds(self, alice, bob, live):
        from django.http import Http404

        from accounts import selectors

        for ref in ("primary", str(live.pk)):
            lean = selectors.account_for_read_get(user=alice, account_ref=ref)
            full = selectors.account_get(user=alice, account_ref=ref)
            assert (lean.pk, lean.mode, lean.is_primary, lean.cash) == (full.pk, full.mode, full.is_primary, full.cash)
            assert lean.user.tenant.slug == full.user.tenant.slug == "acme"
        lean = selectors.account_for_read_get(user=alice, account_ref=str(live.pk))
        full = selectors.account_get(user=alice, account_ref=str(live.pk))
        assert (lean.connection.status, lean.connection.access_expires_at) == (
            full.connection.status,
            full.connection.access_expires_at,
        )
        # What only a call to the broker needs is loaded on first use.
        assert lean.connection.access_token == full.connection.access_token
        assert lean.connection.app.api_secret == full.connection.app.api_secret
        for ref in (str(live.pk), "primary-ish", "²", "999999999"):
            with pytest.raises(Http404):
                selectors.account_for_read_get(user=bob, account_ref=ref)
