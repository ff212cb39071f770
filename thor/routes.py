from django.urls import path


def slash_optional(route, view, name=None):
    """The route with and without its trailing slash, so no POST is lost to APPEND_SLASH.

    Seeds 000 and 001 call paths without a slash, seed 002 with one.
    """
    bare = route.rstrip("/")
    return [path(bare, view, name=name), path(f"{bare}/", view)]
