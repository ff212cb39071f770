"""Cursor pagination that answers a 400 to a cursor it did not make.

DRF's CursorPagination answers a 404 to a cursor it cannot decode and trusts the position inside
a decodable one, so `p=abc` on an integer ordering reaches the database and fails there (a 500).
"""

from django.core.exceptions import FieldDoesNotExist, ValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from thor.errors import ApplicationError


class InvalidCursor(ApplicationError):
    def __init__(self):
        super().__init__("The cursor is invalid.", code="invalid_cursor")


class StrictCursorPagination(CursorPagination):
    """A malformed cursor, or a position that is not a value of the ordering field, is a 400."""

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise InvalidCursor() from None
        if cursor is not None and cursor.position is not None:
            self._check_position(cursor.position)
        return cursor

    def _check_position(self, position: str | int) -> None:
        # DRF decodes the position as the str the cursor carried; its stub types it int.
        # paginate_queryset has made self.ordering a tuple; the cursor's position is its first field.
        try:
            field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
        except FieldDoesNotExist:
            # An annotated ordering: nothing to check it against but the database.
            return
        try:
            # The field's validators include the database's integer range: 10**30 is no id either.
            field.run_validators(field.to_python(position))
        except (ValidationError, TypeError, ValueError, OverflowError):
            raise InvalidCursor() from None
