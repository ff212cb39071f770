from django.urls import path


def slash_optional(route, view, name=None):
    """The route with and without its trailing slash, so no POST is lost to APPEND_SLASH.

    Seeds 000 and 001 call paths without a slash, seed 002 with one.
    """
    bare = route.rstrip("/")
    # One name for both, so metrics count them as one view.
    return [path(bare, view, name=name), path(f"{bare}/", view, name=name)]


def document_slashed_paths_only(endpoints, **kwargs):
    """drf-spectacular hook: each route is documented once, in its trailing-slash form."""
    paths = {path for path, *_ in endpoints}
    return [endpoint for endpoint in endpoints if endpoint[0].endswith("/") or f"{endpoint[0]}/" not in paths]
