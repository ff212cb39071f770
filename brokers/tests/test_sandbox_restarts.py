"""A restarted sandbox never repeats an identifier a Thor database may hold from its last run.

`make run` keeps its database across runs while the sandbox starts from nothing: order ids and
provider subjects must not start from a counter again (issue 23, finding 10).
"""

from datetime import datetime, timedelta, timezone

import pytest
import requests
from kiteconnect import KiteConnect

from brokers.sandbox.state import ClockIds
from brokers.sandbox.testing import start_sandbox
from brokers.tests.kite_sandbox_calls import kite_session, place
from brokers.tests.schwab_sandbox_calls import CALLBACK, CLIENT_ID, CLIENT_SECRET, api, equity_order, tokens_for
from brokers.tests.test_sandbox_idp import authorize, token

pytestmark = pytest.mark.e2e

IST = timezone(timedelta(hours=5, minutes=30))
KITE_APP = {"api_key": "test_key", "api_secret": "test_secret", "redirect_url": "http://127.0.0.1:9/callback"}
SCHWAB_APP = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": CALLBACK}
IDP_CLIENT = {"client_id": "c1", "client_secret": "s1"}


def kite_order_ids(count: int) -> list[str]:
    with start_sandbox(apps=[KITE_APP], tick_seconds=None) as sandbox:
        kite: KiteConnect = kite_session(sandbox)
        return [place(kite, quantity=1) for _ in range(count)]


def schwab_order_ids(count: int) -> list[int]:
    with start_sandbox(schwab_apps=[SCHWAB_APP], tick_seconds=None) as sandbox:
        access = tokens_for(sandbox)["access_token"]
        account = api(sandbox, "GET", "/trader/v1/accounts/accountNumbers", access).json()[0]["hashValue"]
        ids = []
        for _ in range(count):
            answer = api(
                sandbox, "POST", f"/trader/v1/accounts/{account}/orders", access, json=equity_order(price=100.0)
            )
            assert answer.status_code == 201, answer.text
            ids.append(int(answer.headers["Location"].rsplit("/", 1)[1]))
        return ids


def discord_subjects(*emails: str) -> list[str]:
    with start_sandbox(tick_seconds=None, idp_clients={"google": [IDP_CLIENT], "discord": [IDP_CLIENT]}) as idp:
        subjects = []
        for email in emails:
            access = token(idp, "discord", authorize(idp, "discord", email)).json()["access_token"]
            me = requests.get(f"{idp.url}/discord/api/users/@me", headers={"Authorization": f"Bearer {access}"})
            subjects.append(me.json()["id"])
        return subjects


def google_subject(email: str) -> str:
    with start_sandbox(tick_seconds=None, idp_clients={"google": [IDP_CLIENT], "discord": [IDP_CLIENT]}) as idp:
        access = token(idp, "google", authorize(idp, "google", email)).json()["access_token"]
        return requests.get(f"{idp.url}/google/v1/userinfo", headers={"Authorization": f"Bearer {access}"}).json()[
            "sub"
        ]


def test_kite_order_ids_are_dated_and_a_restarted_sandbox_continues_above_the_last_run():
    first_run = kite_order_ids(3)
    second_run = kite_order_ids(3)

    today = datetime.now(IST).strftime("%y%m%d")
    for order_id in first_run + second_run:
        assert len(order_id) == 15 and order_id.isdigit() and order_id.startswith(today)
    assert first_run == sorted(first_run) and second_run == sorted(second_run)
    assert int(second_run[0]) > int(first_run[-1])


def test_schwab_order_ids_grow_across_a_restart():
    first_run = schwab_order_ids(2)
    second_run = schwab_order_ids(2)

    assert first_run[0] < first_run[1] < second_run[0] < second_run[1]


def test_a_subject_is_the_same_for_an_email_in_every_run_and_differs_between_emails():
    first_run = discord_subjects("ada@example.com", "grace@example.com")
    # The other order: a counter would give grace the subject ada had in the last run.
    second_run = discord_subjects("grace@example.com", "ada@example.com")

    assert first_run == second_run[::-1]
    assert first_run[0] != first_run[1]
    assert all(subject.isdigit() and len(subject) == 18 for subject in first_run)


def test_google_and_discord_give_one_email_unrelated_subjects():
    google = google_subject("ada@example.com")

    assert google == google_subject("ada@example.com")
    assert google.isdigit() and len(google) == 21
    assert google not in discord_subjects("ada@example.com")[0]


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ids_given_faster_than_the_clock_moves_still_grow():
    clock = FakeClock(1_000.0)
    ids = ClockIds(clock, per_second=1000)

    given = [ids.next()[1] for _ in range(5)]

    assert given == [1_000_000, 1_000_001, 1_000_002, 1_000_003, 1_000_004]
    clock.now = 1_000.002
    assert ids.next()[1] == 1_000_005
    clock.now = 1_001.0
    assert ids.next()[1] == 1_001_000


def test_a_clock_set_back_never_repeats_an_id():
    clock = FakeClock(1_000.0)
    ids = ClockIds(clock, per_second=1000)
    last = ids.next()[1]

    clock.now = 900.0

    assert ids.next()[1] == last + 1


def test_the_count_restarts_when_its_origin_moves_forward():
    day = 86_400.0
    clock = FakeClock(day - 1)
    ids = ClockIds(clock, per_second=10, origin=lambda now: now // day * day)
    assert ids.next() == (0.0, 863_990)

    clock.now = day + 0.5

    assert ids.next() == (day, 5)
