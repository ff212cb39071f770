"""Reads the caches answer whole, before DRF's request cycle.

An SPA polls positions, funds and its first page of orders every few seconds for every open tab, and
nearly every one of those reads is a cache hit: the token verified before, the user, its session, the
account and the ready body all in one round trip to Redis. What is left of such a read is DRF's cycle
around it (the request wrapper, content negotiation, the authentication and permission layers, the
response's finalisation), which cost about as much as the rest (bench/README.md). So a view with this
mixin first tries to answer from the caches alone, and only when every part of the answer is known good:

- a GET without a query string, accepting JSON (no Accept, `*/*`, `application/json`, or the SPA's
  axios default), so DRF's negotiation would choose the JSON renderer it has anyway;
- identity.authentication.cached_identity: a Bearer token this process verified, its user cached
  (active and unchanged), its session cached as live;
- the view's `cached_answer(request, identity)` finds its answer in the entries its
  `read_cache_keys(request, user_id)` named, fetched in the same round trip.

Anything else (a first request, a miss, an expired token, a logged-out session, someone else's account,
an error of any kind) goes through DRF exactly as before: the same authentication, 401 and 404 bodies,
throttles and exception handler. The answer carries the headers DRF's cycle adds to the view's (`Allow`),
and the middleware runs around both alike (correlation id, metrics, no-store, security headers, CORS);
a test holds the two paths' status, headers and bytes together.

The view function keeps the caches' half as `cached_response(request, ...)`: under granian,
thor.early_reads calls it before Django's handler and replays the middleware around its answer.
"""

import functools

from django.http import HttpResponse

from identity.authentication import cached_identity

# What browsers' fetch and the SPA's axios send by default: DRF picks its JSON renderer for each.
_JSON_ACCEPTS = frozenset({"", "*/*", "application/json", "application/json, text/plain, */*"})


def _answerable(request) -> bool:
    meta = request.META
    return (
        request.method == "GET"
        and not meta.get("QUERY_STRING")
        and meta.get("HTTP_ACCEPT", "").strip() in _JSON_ACCEPTS
    )


class AnsweredFromCaches:
    """Mixin for an APIView: GETs the caches answer whole skip DRF's cycle (see the module).

    The view defines `read_cache_keys(request, user_id)` (which identity's read cache also fetches) and
    `cached_answer(request, identity) -> bytes | None`, the JSON body or None to let DRF answer; both
    read the URL's arguments from `self.kwargs`, which DRF's cycle sets too.
    """

    @classmethod
    def as_view(cls, **initkwargs):
        view = super().as_view(**initkwargs)
        probe = cls(**initkwargs)
        probe.setup(None)  # as Django's view does: a GET view answers HEAD too
        allow = ", ".join(probe.allowed_methods)

        def cached_response(request, *args, **kwargs) -> HttpResponse | None:
            if not _answerable(request):
                return None
            own = cls(**initkwargs)
            own.setup(request, *args, **kwargs)
            identity = cached_identity(request, wanted=lambda user_id: own.read_cache_keys(request, user_id))
            body = own.cached_answer(request, identity) if identity is not None else None
            if body is None:
                return None
            return HttpResponse(body, content_type="application/json", headers={"Allow": allow})

        def answered_from_caches(request, *args, **kwargs):
            return cached_response(request, *args, **kwargs) or view(request, *args, **kwargs)

        # DRF's attributes on the view (cls, initkwargs, csrf_exempt) stay: the schema and CSRF read them.
        answered = functools.wraps(view)(answered_from_caches)
        # What thor.early_reads calls, before Django's handler, under the WSGI server production runs.
        answered.cached_response = cached_response
        return answered
