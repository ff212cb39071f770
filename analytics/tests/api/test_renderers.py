"""EmbeddingJSONRenderer: DRF's JSON, with pre-rendered members embedded as they are."""

import json

from rest_framework.renderers import JSONRenderer

from analytics.api.renderers import EmbeddingJSONRenderer, PreRenderedJSON


def test_pre_rendered_members_are_embedded_as_they_are_after_the_others():
    points = '[{"t":"2026-01-01T00:00:00+00:00","strike":"24000.0000","value":0.1}]'
    rendered = EmbeddingJSONRenderer().render({"count": 1, "points": PreRenderedJSON(points), "as_of": "now"})
    assert rendered == b'{"count":1,"as_of":"now","points":' + points.encode() + b"}"
    assert json.loads(rendered)["points"] == json.loads(points)


def test_without_pre_rendered_members_it_is_drfs_json_renderer():
    data = {"count": 0, "points": [], "name": "NIFTY & \u20b9"}
    assert EmbeddingJSONRenderer().render(data) == JSONRenderer().render(data)
    assert EmbeddingJSONRenderer().render([1, 2]) == JSONRenderer().render([1, 2])


def test_an_object_of_pre_rendered_members_only_and_an_indented_one_stay_valid_json():
    assert EmbeddingJSONRenderer().render({"points": PreRenderedJSON("[]")}) == b'{"points":[]}'
    indented = EmbeddingJSONRenderer().render(
        {"count": 2, "points": PreRenderedJSON("[1,2]")}, "application/json; indent=4", {"indent": 4}
    )
    assert json.loads(indented) == {"count": 2, "points": [1, 2]}
