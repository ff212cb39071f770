"""The order egress: what URL is taken, where it is kept, how it is probed, and how it is shown (never)."""

import logging

import pytest
from django.db import connection as db

from brokers import egress
from brokers.sandbox.egress_proxy import EgressProxy
from brokers.tests.factories import BrokerConnectionFactory
from identity.models import User
from thor.crypto import decrypt

SECRET = "pa55-w0rd-xyz"


@pytest.fixture
def loopback_proxies(settings):
    settings.THOR_ORDER_EGRESS_PRIVATE_HOSTS = ["127.0.0.2"]


@pytest.fixture
def proxy(loopback_proxies, sandbox):
    """A proxy on 127.0.0.2, and the sandbox as the broker it tunnels to."""
    running = EgressProxy("127.0.0.2")
    yield running
    running.close()


@pytest.fixture
def connection(alice):
    return BrokerConnectionFactory(user=alice)


def egress_put(client, connection, url):
    return client.put(f"/api/brokers/connections/{connection.pk}/egress", {"url": url}, format="json")


class TestTheUrlTaken:
    @pytest.mark.parametrize(
        "url",
        [
            "http://proxy.example.net:3128",
            "https://user:pass@proxy.example.net:8443",
            "http://8.8.4.4:8080/",
        ],
    )
    def test_an_http_or_https_proxy_on_a_public_host(self, url):
        assert egress.order_egress_clean(f"  {url} ") == url

    @pytest.mark.parametrize(
        "url",
        [
            "socks5://proxy.example.net:1080",
            "file:///etc/passwd",
            "ftp://proxy.example.net",
            "gopher://proxy.example.net:70",
            "javascript:alert(1)",
            "http://localhost:3128",
            "http://127.0.0.1:3128",
            "http://10.0.0.5:3128",
            "http://169.254.169.254",
            "http://[::1]:3128",
            "http://metadata.google.internal",
            "http://redis:6379",
            "http://printer.local:80",
            "http://proxy.example.net:99999",
            "http://proxy.example.net:3128/path?x=1",
            "http://proxy.example.net:3128\r\nX-Injected: 1",
            "http://",
            "",
        ],
    )
    def test_anything_else_is_refused_without_repeating_it(self, url):
        with pytest.raises(Exception) as refused:
            egress.order_egress_clean(url)

        messages = refused.value.message_dict["url"]
        assert messages and all(url.strip() not in message for message in messages if url.strip())

    def test_a_loopback_host_the_operator_listed_is_taken(self, loopback_proxies):
        assert egress.order_egress_clean("http://127.0.0.2:3128") == "http://127.0.0.2:3128"


class TestTheApi:
    def test_it_is_stored_encrypted_answered_as_set_and_probed(self, alice_client, connection, proxy):
        url = proxy.url(f"alice:{SECRET}")

        answer = egress_put(alice_client, connection, url)

        assert answer.status_code == 200, answer.json()
        assert answer.json()["order_egress"] == "set"
        assert answer.json()["health"]["egress"] == {
            "required_by_tenant": False,
            "set_on": "connection",
            "ok": True,
            "checked_at": answer.json()["health"]["egress"]["checked_at"],
            "error": "",
        }
        assert SECRET not in answer.content.decode() and str(proxy.port) not in answer.content.decode()
        with db.cursor() as cursor:
            cursor.execute("SELECT order_egress FROM brokers_brokerconnection WHERE id = %s", [connection.pk])
            (ciphertext,) = cursor.fetchone()
        assert SECRET not in ciphertext and decrypt(ciphertext) == url

    def test_a_proxy_that_does_not_answer_is_stored_with_a_failed_probe(self, alice_client, connection, settings):
        settings.THOR_ORDER_EGRESS_PRIVATE_HOSTS = ["127.0.0.2"]
        settings.THOR_ORDER_EGRESS_PROBE_TIMEOUT = 1.0
        closed = EgressProxy("127.0.0.2")
        closed.close()

        answer = egress_put(alice_client, connection, closed.url())

        health = answer.json()["health"]["egress"]
        assert answer.status_code == 200 and health["ok"] is False
        assert health["error"] == "The proxy could not be reached."

    @pytest.mark.parametrize(
        "url",
        [
            "file:///etc/passwd",
            "socks5://u:p@proxy.example.net:1080",
            f"ftp://alice:{SECRET}@proxy.example.net",
            f"http://alice:{SECRET}@localhost:3128",
            "http://metadata.google.internal/computeMetadata/v1/",
        ],
    )
    def test_hostile_input_is_a_400_that_does_not_show_it_back(self, alice_client, connection, url, caplog):
        caplog.set_level(logging.DEBUG)

        answer = egress_put(alice_client, connection, url)

        assert answer.status_code == 400
        assert "url" in answer.json()["errors"]
        assert url not in answer.content.decode() and SECRET not in answer.content.decode()
        assert SECRET not in caplog.text
        connection.refresh_from_db()
        assert connection.order_egress == ""

    def test_delete_removes_it(self, alice_client, connection, proxy):
        egress_put(alice_client, connection, proxy.url())

        answer = alice_client.delete(f"/api/brokers/connections/{connection.pk}/egress")

        assert answer.json()["order_egress"] == "not set"
        assert answer.json()["health"]["egress"]["set_on"] is None
        connection.refresh_from_db()
        assert (connection.order_egress, connection.order_egress_probe) == ("", {})

    def test_another_users_connection_is_a_404(self, bob_client, connection, proxy):
        assert egress_put(bob_client, connection, proxy.url()).status_code == 404

    def test_a_new_tenant_requires_it_and_the_list_says_so(self, alice_client, connection):
        tenant = connection.user.tenant
        tenant.live_orders_require_egress = True
        tenant.save(update_fields=["live_orders_require_egress"])

        listed = alice_client.get("/api/brokers/connections").json()[0]

        assert listed["order_egress"] == "not set"
        assert listed["health"]["egress"] == {
            "required_by_tenant": True,
            "set_on": None,
            "ok": None,
            "checked_at": None,
            "error": "",
        }


def test_a_new_tenant_requires_an_egress_for_live_kite_orders():
    from identity.models import Tenant

    assert Tenant().live_orders_require_egress is True


class TestWhichEgress:
    def test_the_connections_then_the_users_apps_then_the_tenants(self, alice):
        connection = BrokerConnectionFactory(user=alice)
        tenant = alice.tenant
        tenant.order_egress = "http://tenant.example.net:1"
        tenant.save()
        assert egress.order_egress_for(connection).source == "tenant"

        connection.app.owner = alice
        connection.app.order_egress = "http://app.example.net:1"
        connection.app.save()
        assert egress.order_egress_for(connection).source == "app"

        connection.order_egress = "http://connection.example.net:1"
        connection.save()
        assert egress.order_egress_for(connection).url == "http://connection.example.net:1"

    def test_a_shared_apps_egress_is_never_used(self, alice):
        connection = BrokerConnectionFactory(user=alice)
        connection.app.order_egress = "http://shared.example.net:1"
        connection.app.save()

        assert egress.order_egress_for(connection) is None


@pytest.fixture
def ops_client(client, tenant):
    ops = User.objects.create_superuser("ops@acme.test", "an-ops-passphrase-1", tenant=tenant)
    client.force_login(ops)
    return client


class TestTheAdmin:
    def test_the_pages_never_show_it(self, ops_client, connection, proxy):
        url = proxy.url(f"alice:{SECRET}")
        for holder in (connection, connection.app, connection.user.tenant):
            holder.order_egress = url
            holder.save()
        pages = [
            f"/admin/brokers/brokerconnection/{connection.pk}/change/",
            "/admin/brokers/brokerconnection/",
            f"/admin/brokers/brokerapp/{connection.app_id}/change/",
            f"/admin/identity/tenant/{connection.user.tenant_id}/change/",
        ]

        for page in pages:
            html = ops_client.get(page).content.decode()
            assert SECRET not in html and f":{proxy.port}" not in html, page
        assert 'name="order_egress"' in ops_client.get(pages[0]).content.decode()

    def test_a_tenant_egress_set_in_the_admin_is_probed_and_a_hostile_one_refused(self, ops_client, tenant, proxy):
        page = f"/admin/identity/tenant/{tenant.pk}/change/"
        form = {
            "slug": tenant.slug,
            "name": tenant.name,
            "allowed_origins": '["http://localhost:5173"]',
            "token_delivery": tenant.token_delivery,
            "paper_starting_cash": tenant.paper_starting_cash,
            "currency": tenant.currency,
            "paper_other_currencies": "{}",
            "paper_margin_rates": "{}",
            "kite_market_protection": "-1",
            "live_orders_require_egress": "on",
            "trading_enabled": "on",
            "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00",
        }

        refused = ops_client.post(page, {**form, "order_egress": f"file://alice:{SECRET}@x/etc/passwd"})
        assert refused.status_code == 200 and SECRET not in refused.content.decode()
        tenant.refresh_from_db()
        assert tenant.order_egress == ""

        saved = ops_client.post(page, {**form, "order_egress": proxy.url()})
        assert saved.status_code == 302
        tenant.refresh_from_db()
        assert tenant.order_egress == proxy.url() and tenant.order_egress_probe["ok"] is True

        ops_client.post(page, {**form, "order_egress": ""})  # blank keeps it
        tenant.refresh_from_db()
        assert tenant.order_egress == proxy.url()


def test_a_thread_keeps_pools_for_a_bounded_number_of_egress_proxies():
    from brokers.adapters import kite

    session = kite._egress_session()
    for n in range(kite.MAX_EGRESS_POOLS * 2):
        session.get_adapter("https://api.kite.trade").proxy_manager_for(f"http://proxy{n}.example.net:3128")

    assert kite._egress_session() is session
    assert len(session.get_adapter("https://api.kite.trade").proxy_manager) < kite.MAX_EGRESS_POOLS
    assert kite._session() is not session  # direct calls keep their own pools
