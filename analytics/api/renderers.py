"""DRF's JSON renderer, able to embed JSON text that was rendered elsewhere (PostgreSQL's json_agg) as it is.

A month of one-minute points is 43,200 of them: parsing PostgreSQL's text and rendering it again costs
over ten times what embedding it does (a cost the moneyness series' response budget cannot carry).
"""

import json

from rest_framework.renderers import JSONRenderer


class PreRenderedJSON(str):
    """JSON text, already rendered: the renderer below embeds it as it is."""


class EmbeddingJSONRenderer(JSONRenderer):
    """JSONRenderer, except that the members of a top-level object holding PreRenderedJSON are embedded as
    they are, after the object's other members."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        embedded = (
            {name: value for name, value in data.items() if isinstance(value, PreRenderedJSON)}
            if isinstance(data, dict)
            else {}
        )
        if not embedded:
            return super().render(data, accepted_media_type, renderer_context)
        others = {name: value for name, value in data.items() if name not in embedded}
        rendered = super().render(others, accepted_media_type, renderer_context).rstrip()
        # One JSON object: its members, then its closing brace; the embedded members go before the brace.
        members = b",".join(json.dumps(name).encode() + b":" + value.encode() for name, value in embedded.items())
        separator = b"" if not others else b","
        return rendered[:-1] + separator + members + b"}"
