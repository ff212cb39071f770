"""JSON rendered by orjson: for the data Thor's reads answer, byte for byte what DRF's JSONRenderer renders.

For the reads whose answers are large and asked for often (a first page of fifty orders, positions):
DRF's renderer goes through the standard library's encoder, which costs more than the rest of such a
read when the answer comes from a cache. This one gives the same bytes (compact separators, UTF-8
unescaped, U+2028/U+2029 escaped, DRF's own encoding of datetimes, decimals, UUIDs and lazy text
through its encoder's `default`) and hands to DRF's renderer what it would render otherwise: an indent
asked for, an integer beyond 64 bits. One difference it does not catch, so it serves only views whose
answers hold no float (their serializers write money and quantities as text): the standard library
writes 1e-05 where orjson writes 1e-5, and NaN where orjson writes null. Tests hold the two together
(thor/tests/test_renderers.py).
"""

import orjson
from rest_framework.renderers import JSONRenderer

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
_LINE_SEPARATOR, _PARAGRAPH_SEPARATOR = "\u2028".encode(), "\u2029".encode()


class OrjsonRenderer(JSONRenderer):
    """DRF's JSONRenderer through orjson, for answers without floats (see the module)."""

    def __init__(self):
        self._default = self.encoder_class().default

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None or not self.compact or self.ensure_ascii:
            return super().render(data, accepted_media_type, renderer_context)
        if self.get_indent(accepted_media_type, renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            rendered = orjson.dumps(data, default=self._default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        if _LINE_SEPARATOR in rendered or _PARAGRAPH_SEPARATOR in rendered:
            rendered = rendered.replace(_LINE_SEPARATOR, b"\\u2028").replace(_PARAGRAPH_SEPARATOR, b"\\u2029")
        return rendered
