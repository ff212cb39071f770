"""The kept first page of an account's orders (accounts.order_pages): answered again only while no order of the
account has changed, so it is never older than the orders it shows.

Orders change inside the test's transaction here, so each change runs its on-commit work explicitly
(django_capture_on_commit_callbacks), as a committed request would.
"""

import pytest
from django.core.cache import cache
from rest_framework.renderers import JSONRenderer

from accounts import caches, order_pages
from accounts.api.serializers import OrderOutputSerializer
from accounts.models import Order, TradingAccount
from accounts.tests.conftest import place

pytestmark = pytest.mark.django_db
ORDERS = "/api/accounts/primary/orders"


@pytest.fixture
def placed(alice_client, django_capture_on_commit_callbacks):
    def place_committed(**overrides):
        with django_capture_on_commit_callbacks(execute=True):
            response = place(alice_client, **overrides)
        assert response.status_code == 201, response.json()
        return response.json()

    return place_committed


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [order["id"] for order in response.json()["results"]]


class TestKeptUntilAnOrderChanges:
    def test_a_repeated_read_serializes_nothing(self, alice_client, placed, django_assert_max_num_queries):
        placed()
        first = alice_client.get(ORDERS)

        # The account of a paper read is always loaded; the orders are not.
        with django_assert_max_num_queries(1):
            second = alice_client.get(ORDERS)

        assert second.content == first.content and second["Content-Type"] == "application/json"

    def test_a_new_order_is_on_the_next_read(self, alice_client, placed):
        first = placed()
        assert ids(alice_client.get(ORDERS)) == [first["id"]]

        second = placed(tradingsymbol="SBIN")

        assert ids(alice_client.get(ORDERS)) == [second["id"], first["id"]]

    def test_a_changed_order_is_on_the_next_read(self, alice_client, placed, django_capture_on_commit_callbacks):
        order = placed(order_type="LIMIT", price="1000")
        assert alice_client.get(ORDERS).json()["results"][0]["status"] == "OPEN"

        with django_capture_on_commit_callbacks(execute=True):
            assert alice_client.delete(f"/api/accounts/primary/orders/{order['id']}").status_code == 200

        assert alice_client.get(ORDERS).json()["results"][0]["status"] == "CANCELLED"

    def test_a_change_committed_while_a_page_was_built_never_serves_that_page(self, alice, placed):
        placed()
        account = TradingAccount.objects.get(user=alice, is_primary=True)
        variant = "a page being built"

        def built_before_the_change_committed():
            placed(tradingsymbol="SBIN")  # commits after this build read the orders
            return {"results": "before the change"}

        def built_again():
            return {"results": "after the change"}

        first = order_pages.page_kept_or_built(
            account_id=account.pk, variant=variant, build=built_before_the_change_committed
        )
        second = order_pages.page_kept_or_built(account_id=account.pk, variant=variant, build=built_again)
        third = order_pages.page_kept_or_built(
            account_id=account.pk, variant=variant, build=built_before_the_change_committed
        )

        assert (first, second, third) == ({"results": "before the change"}, built_again(), built_again())

    def test_a_version_made_again_never_matches_an_old_page(self, alice, alice_client, placed):
        placed()
        alice_client.get(ORDERS)
        account = TradingAccount.objects.get(user=alice, is_primary=True)
        # Expired (or evicted) with no change seen: the next builder makes a new one.
        cache.delete(caches.orders_version_key(account.pk))
        Order.objects.filter(account=account).update(status_message="changed behind the cache's back")

        assert alice_client.get(ORDERS).json()["results"][0]["status_message"] == "changed behind the cache's back"

    def test_with_the_setting_at_zero_nothing_is_kept(self, alice_client, placed, settings):
        settings.THOR_ORDER_PAGE_SECONDS = 0
        placed()
        alice_client.get(ORDERS)

        assert cache.keys("thor:orders-page:*") == []


class TestVariants:
    def test_each_query_is_its_own_page(self, alice_client, placed):
        placed()
        placed(tradingsymbol="SBIN")
        alice_client.get(ORDERS)

        assert len(ids(alice_client.get(ORDERS, {"limit": 1}))) == 1
        assert {o["tradingsymbol"] for o in alice_client.get(ORDERS, {"symbol": "SBIN"}).json()["results"]} == {"SBIN"}
        assert len(ids(alice_client.get(ORDERS))) == 2

    def test_the_next_link_names_the_host_it_was_asked_on(self, alice_client, placed):
        placed()
        placed(tradingsymbol="SBIN")

        one = alice_client.get(ORDERS, {"limit": 1}, HTTP_HOST="localhost").json()["next"]
        other = alice_client.get(ORDERS, {"limit": 1}, HTTP_HOST="127.0.0.1").json()["next"]

        assert one.startswith("http://localhost/") and other.startswith("http://127.0.0.1/")

    def test_a_cursor_page_is_built_every_time(self, alice, alice_client, placed):
        placed()
        placed(tradingsymbol="SBIN")
        cursor_url = alice_client.get(ORDERS, {"limit": 1}).json()["next"]
        account = TradingAccount.objects.get(user=alice, is_primary=True)
        before = set(cache.keys(f"thor:orders-page:{account.pk}:*"))

        assert len(ids(alice_client.get(cursor_url))) == 1
        assert set(cache.keys(f"thor:orders-page:{account.pk}:*")) == before


class TestTheSameAnswer:
    def test_a_page_is_what_the_order_serializer_renders(self, alice, alice_client, placed):
        placed()
        placed(order_type="LIMIT", price="1400.05", tradingsymbol="SBIN", quantity=3)
        account = TradingAccount.objects.get(user=alice, is_primary=True)

        for response in (alice_client.get(ORDERS), alice_client.get(ORDERS)):  # built, then kept
            orders = Order.objects.filter(account=account).order_by("-id")
            expected = {"next": None, "previous": None, "results": OrderOutputSerializer(orders, many=True).data}
            assert response.content == JSONRenderer().render(expected)


class TestStillTheSameRules:
    def test_bad_filters_are_still_a_400(self, alice_client, placed):
        placed()
        alice_client.get(ORDERS)

        response = alice_client.get(ORDERS, {"status": "NOT_A_STATUS"})

        assert response.status_code == 400 and response.json()["code"] == "validation_error"

    @pytest.mark.parametrize("intruder", ["bob_client", "charlie_client"])
    def test_another_users_account_is_still_a_404(self, request, alice, alice_client, placed, intruder):
        placed()
        account = TradingAccount.objects.get(user=alice, is_primary=True)
        alice_client.get(f"/api/accounts/{account.pk}/orders")

        response = request.getfixturevalue(intruder).get(f"/api/accounts/{account.pk}/orders")

        assert response.status_code == 404

    def test_signed_out_is_still_a_401(self, alice_client, placed, anon_client):
        placed()
        alice_client.get(ORDERS)

        assert anon_client.get(ORDERS).status_code == 401
