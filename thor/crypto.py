"""Secrets at rest: Fernet encryption with rotatable keys (MultiFernet semantics).

`THOR_ENCRYPTION_KEYS` lists keys newest first: the first encrypts, all decrypt.
`manage.py rotate_encryption_keys` re-encrypts every stored value with the first key.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        # Development only (production refuses to start without keys): derived from SECRET_KEY.
        keys = (base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest()).decode(),)
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "Environment variable THOR_ENCRYPTION_KEYS must be comma-separated Fernet keys."
        ) from None


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.THOR_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return fernet().decrypt(ciphertext.encode()).decode()


def rotate(ciphertext: str) -> str:
    return fernet().rotate(ciphertext.encode()).decode()


class EncryptedTextField(models.TextField):
    """A text column stored as a Fernet token; reads give back the plaintext.

    Never filter on it: equal plaintexts encrypt to different tokens.
    """

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        try:
            return decrypt(value)
        except InvalidToken:
            raise ImproperlyConfigured(
                f"{self.model.__name__}.{self.name} cannot be decrypted with THOR_ENCRYPTION_KEYS."
            ) from None

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)


def encrypted_fields():
    """(model, [field names]) for every model with an encrypted column."""
    from django.apps import apps

    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            yield model, names
