import io

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from brokers.models import BrokerApp, BrokerKind
from thor import crypto

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
SECRET = "kite-api-secret-0123456789"


def stored_secret(app):
    """The column as the database holds it, past the field's decryption."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_secret FROM brokers_brokerapp WHERE id = %s", [app.pk])
        return cursor.fetchone()[0]


@pytest.fixture
def broker_app(tenant):
    return BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.KITE, api_key="key", api_secret=SECRET)


class TestEncryptedTextField:
    def test_round_trip(self, broker_app):
        assert BrokerApp.objects.get(pk=broker_app.pk).api_secret == SECRET

    def test_the_database_holds_a_fernet_token_not_the_plaintext(self, broker_app):
        stored = stored_secret(broker_app)

        assert SECRET not in stored
        assert crypto.decrypt(stored) == SECRET

    def test_equal_plaintexts_are_stored_differently(self, tenant, broker_app):
        twin = BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.SCHWAB, api_key="key", api_secret=SECRET)

        assert stored_secret(twin) != stored_secret(broker_app)

    def test_empty_values_stay_empty(self, alice, broker_app):
        from brokers.models import BrokerConnection

        connection_row = BrokerConnection.objects.create(user=alice, app=broker_app)

        assert BrokerConnection.objects.get(pk=connection_row.pk).access_token == ""


class TestKeyRotation:
    def test_rotate_command_re_encrypts_with_the_newest_key(self, settings, tenant):
        settings.THOR_ENCRYPTION_KEYS = [OLD_KEY]
        app = BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.KITE, api_key="key", api_secret=SECRET)
        before = stored_secret(app)
        settings.THOR_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

        output = io.StringIO()

        call_command("rotate_encryption_keys", stdout=output)

        settings.THOR_ENCRYPTION_KEYS = [NEW_KEY]
        assert "brokers.BrokerApp: api_secret" in output.getvalue()
        assert stored_secret(app) != before
        assert BrokerApp.objects.get(pk=app.pk).api_secret == SECRET

    def test_both_keys_decrypt_before_rotation(self, settings, tenant):
        settings.THOR_ENCRYPTION_KEYS = [OLD_KEY]
        app = BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.KITE, api_key="key", api_secret=SECRET)

        settings.THOR_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

        assert BrokerApp.objects.get(pk=app.pk).api_secret == SECRET


class TestWrongKeys:
    def test_a_key_that_did_not_encrypt_the_value_fails_clearly(self, settings, tenant):
        settings.THOR_ENCRYPTION_KEYS = [OLD_KEY]
        app = BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.KITE, api_key="key", api_secret=SECRET)
        settings.THOR_ENCRYPTION_KEYS = [NEW_KEY]

        with pytest.raises(ImproperlyConfigured, match=r"BrokerApp\.api_secret .*THOR_ENCRYPTION_KEYS"):
            BrokerApp.objects.get(pk=app.pk)

    def test_a_malformed_key_names_the_variable(self, settings):
        settings.THOR_ENCRYPTION_KEYS = ["not-a-fernet-key"]

        with pytest.raises(ImproperlyConfigured, match="THOR_ENCRYPTION_KEYS"):
            crypto.encrypt(SECRET)

    def test_rotation_with_a_missing_old_key_names_the_row_and_changes_nothing(self, settings, tenant):
        from django.core.management.base import CommandError

        settings.THOR_ENCRYPTION_KEYS = [OLD_KEY]
        app = BrokerApp.objects.create(tenant=tenant, kind=BrokerKind.KITE, api_key="key", api_secret=SECRET)
        before = stored_secret(app)
        settings.THOR_ENCRYPTION_KEYS = [NEW_KEY]

        with pytest.raises(CommandError, match=rf"brokers.BrokerApp id={app.pk}"):
            call_command("rotate_encryption_keys", stdout=io.StringIO())

        assert stored_secret(app) == before
