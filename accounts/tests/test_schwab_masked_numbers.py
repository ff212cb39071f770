"""Seed 002's account dropdown: every Schwab path takes the `accountNumber` exactly as Thor listed it.

/api/schwab/accounts/ shows numbers masked (`****6903`) and seed 002's SPA sends that value back as
`account_number`. It names an account when exactly one of the user's accounts ends that way; two of
them are a 400 that says so, another user's a 404. Over the Schwab sandbox.
"""

import pytest

from accounts.models import TradingAccount
from accounts.services import trading_account_for_connection
from brokers.adapters.types import BrokerAccountRef
from brokers.tests import schwab_link_steps
from brokers.tests.schwab_link_steps import connection_for_grant, link_schwab, sandbox_grants

pytestmark = pytest.mark.django_db
schwab_sandbox, schwab_app = schwab_link_steps.schwab_sandbox, schwab_link_steps.schwab_app


@pytest.fixture
def linked(alice_client, schwab_sandbox, schwab_app):
    """Alice's sandbox Schwab login (a margin and a cash account), linked as seed 002's page does."""
    return link_schwab(alice_client)


def listed(client) -> dict[int, str]:
    """{thor account id: accountNumber as /api/schwab/accounts/ shows it}."""
    response = client.get("/api/schwab/accounts/")
    assert response.status_code == 200, response.json()
    return {item["thor_account_id"]: item["securitiesAccount"]["accountNumber"] for item in response.json()}


def seed_002_reads(number: str) -> list[tuple[str, dict]]:
    """Every seed 002 path that names an account, with `number` where the SPA puts it."""
    return [
        ("/api/schwab/account/summary/", {"account_number": number}),
        ("/api/schwab/account/positions/", {"account_number": number}),
        (f"/api/schwab/accounts/{number}/balances/", {}),
        (f"/api/schwab/accounts/{number}/positions/", {}),
    ]


def link_grant(user, app, grant) -> list[TradingAccount]:
    """A sandbox login of `user`'s with its live accounts, as linking leaves them."""
    connection = connection_for_grant(user, app, grant)
    refs = [
        BrokerAccountRef(broker_account_id=a["hashValue"], account_number=a["accountNumber"]) for a in grant["accounts"]
    ]
    return trading_account_for_connection(connection=connection, broker_accounts=refs)


def two_logins_sharing_last_digits(grants: list[dict]) -> tuple[dict, dict, str]:
    """Two sandbox logins with an account each whose numbers end in the same four digits."""
    seen: dict[str, dict] = {}
    for grant in grants:
        for account in grant["accounts"]:
            last = account["accountNumber"][-4:]
            if last in seen and seen[last] is not grant:
                return seen[last], grant, last
            seen.setdefault(last, grant)
    raise AssertionError("no two sandbox logins share an account's last four digits; seed more")


class TestMaskedNumbers:
    def test_the_masked_number_as_listed_works_on_every_path(self, alice_client, linked):
        for thor_account_id, number in listed(alice_client).items():
            assert number.startswith("****")
            for url, params in seed_002_reads(number):
                response = alice_client.get(url, params)
                assert response.status_code == 200, (url, response.json())
                assert response.json()["thor_account_id"] == thor_account_id, url
                assert response.json()["account_number"] == number

    def test_the_full_number_and_the_hash_still_work(self, alice_client, linked):
        for account in TradingAccount.objects.filter(connection=linked):
            for value in (account.account_number, account.broker_account_id):
                response = alice_client.get(f"/api/schwab/accounts/{value}/balances/")
                assert response.status_code == 200 and response.json()["thor_account_id"] == account.pk

    def test_another_users_masked_number_is_not_found(
        self, alice_client, bob, bob_client, linked, schwab_sandbox, schwab_app
    ):
        (grant,) = sandbox_grants(schwab_sandbox, schwab_app, 1)
        link_grant(bob, schwab_app, grant)
        alices = set(listed(alice_client).values())
        assert not alices & set(listed(bob_client).values())

        for number in alices:
            for url, params in seed_002_reads(number):
                response = bob_client.get(url, params)
                assert response.status_code == 404, url
                assert response.json()["code"] == "not_found" and response.json()["error"]

    def test_a_masked_number_that_names_two_accounts_is_a_clear_400(
        self, alice, alice_client, schwab_sandbox, schwab_app
    ):
        first, second, last = two_logins_sharing_last_digits(sandbox_grants(schwab_sandbox, schwab_app, 150))
        mine = link_grant(alice, schwab_app, first) + link_grant(alice, schwab_app, second)

        for url, params in seed_002_reads(f"****{last}"):
            response = alice_client.get(url, params)
            assert response.status_code == 400, url
            body = response.json()
            assert body["code"] == "ambiguous_account_number" and body["error"] == body["detail"]
            assert f"****{last}" in body["detail"] and "account_hash" in body["detail"]
        for account in mine:
            response = alice_client.get("/api/schwab/account/summary/", {"account_number": account.account_number})
            assert response.status_code == 200 and response.json()["thor_account_id"] == account.pk

    @pytest.mark.parametrize(
        "value",
        [
            "****",
            "*",
            "***",
            "*****",
            "****12345",
            "*****6903",
            "**** 6903",
            "****٦٩٠٣",
            "****6903' OR '1'='1",
            "'; DROP TABLE x;--",
            "%2A%2A%2A%2A",
        ],
    )
    def test_hostile_numbers_are_not_found(self, alice_client, linked, value):
        response = alice_client.get("/api/schwab/account/summary/", {"account_number": value})

        assert response.status_code == 404, value
        assert response.json()["code"] == "not_found"

    def test_very_long_numbers_are_refused(self, alice_client, linked):
        for value in ("*" * 5000, "****" + "6" * 5000):
            query = alice_client.get("/api/schwab/account/positions/", {"account_number": value})
            path = alice_client.get(f"/api/schwab/accounts/{value}/balances/")
            assert query.status_code == 400 and "account_number" in query.json()["errors"]
            assert path.status_code == 400 and path.json()["error"]
