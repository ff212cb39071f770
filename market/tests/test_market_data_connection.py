"""Which session a tenant's quotes and ticks go through (market.selectors.market_data_connection)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from brokers.models import BrokerConnection
from brokers.services.market_data import market_data_user
from brokers.tests.factories import BrokerAppFactory, BrokerConnectionFactory
from market.selectors import market_data_connection

pytestmark = pytest.mark.django_db


def test_the_tenants_own_market_data_login_comes_before_a_customers_fresher_session(alice, tenant):
    app = BrokerAppFactory(tenant=tenant)
    now = timezone.now()
    own = BrokerConnectionFactory(user=market_data_user(tenant), app=app, last_sync_at=now - timedelta(hours=1))
    BrokerConnectionFactory(user=alice, app=app, last_sync_at=now)  # may have ended at the broker unseen

    assert market_data_connection(tenant=tenant) == own
    assert market_data_connection(tenant_slug=tenant.slug) == own


def test_without_its_own_login_the_most_recently_used_session_serves(alice, bob, tenant):
    app = BrokerAppFactory(tenant=tenant)
    now = timezone.now()
    BrokerConnectionFactory(user=bob, app=app, last_sync_at=now - timedelta(hours=1))
    fresher = BrokerConnectionFactory(user=alice, app=app, last_sync_at=now)

    assert market_data_connection(tenant=tenant) == fresher


def test_an_ended_market_data_login_gives_way(alice, tenant):
    app = BrokerAppFactory(tenant=tenant)
    BrokerConnectionFactory(user=market_data_user(tenant), app=app, status=BrokerConnection.Status.EXPIRED)
    customer = BrokerConnectionFactory(user=alice, app=app)

    assert market_data_connection(tenant=tenant) == customer
