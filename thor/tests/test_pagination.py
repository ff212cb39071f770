"""A cursor the API did not make is a 400 `invalid_cursor`, never a 404 or a 500 (through the orders list)."""

from base64 import b64encode

import pytest

from accounts.tests.conftest import place

pytestmark = pytest.mark.django_db

ORDERS = "/api/accounts/primary/orders"


def cursor(querystring: str) -> str:
    return b64encode(querystring.encode()).decode()


@pytest.mark.parametrize(
    "bad",
    [
        cursor("p=abc"),
        cursor("p=1.5"),
        cursor("p=" + "9" * 40),
        cursor("p="),
        cursor("o=-1"),
        cursor("o=x&p=3"),
        cursor("r=maybe"),
        "not base64 at all!",
        "%ff%fe",
        b64encode(b"\xff\xfe\x00").decode(),
    ],
)
def test_a_malformed_cursor_is_a_400(alice_client, bad):
    place(alice_client, order_type="LIMIT", price="1000.00", quantity=1)

    response = alice_client.get(ORDERS, {"cursor": bad})

    assert response.status_code == 400, response.content
    assert response.json() == {"detail": "The cursor is invalid.", "status_code": 400, "code": "invalid_cursor"}


def test_the_cursors_the_api_hands_out_still_page(alice_client):
    for _ in range(3):
        place(alice_client, order_type="LIMIT", price="1000.00", quantity=1)

    first = alice_client.get(ORDERS, {"limit": 2}).json()
    second = alice_client.get(first["next"]).json()
    back = alice_client.get(second["previous"]).json()

    assert len(first["results"]) == 2 and len(second["results"]) == 1
    assert [order["id"] for order in back["results"]] == [order["id"] for order in first["results"]]


def test_a_well_formed_position_past_the_end_is_an_empty_page(alice_client):
    place(alice_client, order_type="LIMIT", price="1000.00", quantity=1)

    response = alice_client.get(ORDERS, {"cursor": cursor("p=1")})

    assert response.status_code == 200 and response.json()["results"] == []
