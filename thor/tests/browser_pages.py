"""What a person's browser must see at the end of an OAuth hop, checked the same way by every app's tests."""

# Headers a popup can live with: absent, or `unsafe-none` (anything else severs window.opener).
OPENER_KEPT = (None, "unsafe-none")


def opener_kept(response) -> bool:
    return response.get("Cross-Origin-Opener-Policy") in OPENER_KEPT


def assert_login_link_page(response, *never_shown: str) -> None:
    """The 400 page for a login link Thor cannot trust: HTML a person reads, no JSON, nothing echoed back."""
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert "Location" not in response
    text = response.content.decode()
    assert text.lstrip().lower().startswith("<!doctype html>") and "login again" in text
    assert not text.lstrip().startswith("{") and '"code"' not in text
    for value in never_shown:
        assert value not in text, value
    assert opener_kept(response)
