"""Request body parsers: DRF's JSON parser with a nesting limit.

Python's json module parses nested arrays and objects by recursion, so a small body nested a
thousand deep raises RecursionError (a 500 with a traceback per request, on public endpoints too).
The depth is measured first, by a scan that does not recurse, and a body beyond the limit is a 400.
"""

import codecs
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import (  # type: ignore[attr-defined]  # get_encoding: in DRF, not in its stub
    JSONParser,
    get_encoding,
)
from rest_framework.utils import json

# Strings first (their brackets are text), then the brackets that open and close containers.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether `text` nests arrays and objects more than `limit` deep.

    The scan reads tokens left to right as the JSON parser does, so up to the first syntax error
    (where the parser stops too) it counts the depth the parser would reach.
    """
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


class DepthLimitedJSONParser(JSONParser):
    """JSON bodies nested at most THOR_MAX_JSON_DEPTH deep."""

    def parse(self, stream, media_type=None, parser_context=None):
        # DRF's own lookup: it refuses bytes-to-bytes codecs (bz2_codec) that would inflate the body.
        encoding = get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        limit = settings.THOR_MAX_JSON_DEPTH
        if json_depth_exceeds(text, limit):
            raise ParseError(f"JSON parse error - the body is nested more than {limit} levels deep.")
        try:
            return json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
