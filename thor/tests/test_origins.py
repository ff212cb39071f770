import pytest

from thor.origins import origin_of


class TestOriginOf:
    @pytest.mark.parametrize(
        "url, origin",
        [
            ("https://app.acme.test", "https://app.acme.test"),
            ("https://app.acme.test/broker-callback?status=ok#top", "https://app.acme.test"),
            ("http://localhost:5173/", "http://localhost:5173"),
            ("https://app.acme.test:8443/x", "https://app.acme.test:8443"),
            ("http://[::1]:8000/x", "http://[::1]:8000"),
            ("http://[2001:db8::1]", "http://[2001:db8::1]"),
            # The fragment is not part of the authority, so the host is app.acme.test.
            ("https://app.acme.test#@evil.test", "https://app.acme.test"),
        ],
    )
    def test_an_http_url_gives_its_origin(self, url, origin):
        assert origin_of(url) == origin

    @pytest.mark.parametrize(
        "url, origin",
        [
            ("HTTPS://App.ACME.test/", "https://app.acme.test"),
            ("https://app.acme.test:443/", "https://app.acme.test"),
            ("http://app.acme.test:80/", "http://app.acme.test"),
            ("https://app.acme.test:80/", "https://app.acme.test:80"),
        ],
    )
    def test_the_origin_is_canonical_as_a_browser_sends_it(self, url, origin):
        assert origin_of(url) == origin

    @pytest.mark.parametrize(
        "url",
        [
            "javascript:alert(document.cookie)",
            "JavaScript://app.acme.test/%0aalert(1)",
            "data:text/html,<script>alert(1)</script>",
            "ftp://app.acme.test",
            "//evil.test",
            "/relative/path",
            "https:evil.test",
            "https:///evil.test",
            "https://evil@app.acme.test",
            "https://user:password@app.acme.test",
            "https://app.acme.test\\@evil.test",
            "https:\\\\evil.test",
            "https://app.acme.test\t.evil.test",
            "https://app.acme.test\n",
            " https://app.acme.test",
            "https://app.acme.test:99999",
            "https://app.acme.test:0",
            "http://[::1",
            "https://" + "a" * 2100 + ".test",
            "",
            None,
            42,
        ],
    )
    def test_anything_else_has_no_origin(self, url):
        assert origin_of(url) is None
