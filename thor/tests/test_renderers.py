"""OrjsonRenderer renders what DRF's JSONRenderer renders, byte for byte, for the data Thor's reads answer."""

import datetime
import uuid
from collections import OrderedDict
from decimal import Decimal

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from thor.renderers import OrjsonRenderer

UTC = datetime.UTC
CASES = {
    "text, integers, None, booleans": {"a": "x", "b": 1, "c": None, "d": True, "e": False, "f": -(2**63)},
    "non-ASCII and escapes": {"name": '€ café ☃ "quoted" \\ \n\t \x00 \x1f', "emoji": "🙂"},
    "line and paragraph separators": {"text": "a\u2028b\u2029c"},
    "nested and ordered": OrderedDict([("z", [1, [2, {"y": "3"}]]), ("a", {})]),
    # DRF takes serializer=None; its stubs insist on a serializer.
    "DRF's return types": ReturnDict(  # type: ignore[call-overload]
        {"results": ReturnList([{"id": 1}], serializer=None)},  # type: ignore[call-overload]
        serializer=None,
    ),
    "datetimes": {
        "utc": datetime.datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC),
        "offset": datetime.datetime(
            2026, 12, 6, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))
        ),
        "naive": datetime.datetime(2026, 12, 6, 10, 0),
        "date": datetime.date(2026, 12, 6),
        "time": datetime.time(9, 15),
        "duration": datetime.timedelta(minutes=5),
    },
    "decimals, UUIDs, lazy text, tuples": {
        "price": Decimal("1500.05"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "lazy": gettext_lazy("Not found."),
        "pair": ("a", 1),
    },
    "integer keys": {1: "one", 2: "two"},
    "beyond 64 bits": {"big": 2**70},
    "empty": [],
}


@pytest.mark.parametrize("data", CASES.values(), ids=CASES.keys())
def test_the_same_bytes_as_drfs_renderer(data):
    assert OrjsonRenderer().render(data) == JSONRenderer().render(data)


def test_an_indent_asked_for_is_drfs_indent():
    data = {"a": [1, 2]}
    media_type = "application/json; indent=2"

    assert OrjsonRenderer().render(data, media_type) == JSONRenderer().render(data, media_type)


def test_none_is_an_empty_body():
    assert OrjsonRenderer().render(None) == b""
