from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from thor.crypto import encrypted_fields, rotate


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of THOR_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        total = 0
        quote = connection.ops.quote_name
        for model, names in encrypted_fields():
            table = quote(model._meta.db_table)
            pk_column = quote(model._meta.pk.column)
            columns = [quote(model._meta.get_field(name).column) for name in names]
            # Raw SQL on purpose: the ORM field would decrypt on read and encrypt again on write.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SELECT {pk_column}, {', '.join(columns)} FROM {table}")  # noqa: S608
                for pk, *ciphertexts in cursor.fetchall():
                    try:
                        rotated = [rotate(value) if value else value for value in ciphertexts]
                    except InvalidToken:
                        raise CommandError(
                            f"{model._meta.label} id={pk} cannot be decrypted with any key in THOR_ENCRYPTION_KEYS; "
                            "nothing was changed for this model."
                        ) from None
                    assignments = ", ".join(f"{column} = %s" for column in columns)
                    cursor.execute(f"UPDATE {table} SET {assignments} WHERE {pk_column} = %s", [*rotated, pk])  # noqa: S608
                    total += 1
            self.stdout.write(f"{model._meta.label}: {', '.join(names)}")
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {total} row(s)."))
