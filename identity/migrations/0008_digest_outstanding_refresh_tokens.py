"""Outstanding refresh tokens were stored whole (simplejwt keeps the JWT's text); keep only their SHA-256 digest, the
form identity.refresh saves from now on. There is no way back: the digests stay on a reverse migration."""

import hashlib

from django.db import migrations

DIGEST_PREFIX = "sha256:"


def digest_tokens(apps, schema_editor):
    OutstandingToken = apps.get_model("token_blacklist", "OutstandingToken")
    plain = OutstandingToken.objects.exclude(token__startswith=DIGEST_PREFIX).exclude(token="").only("pk", "token")
    batch = []
    for row in plain.iterator(chunk_size=1000):
        row.token = DIGEST_PREFIX + hashlib.sha256(row.token.encode()).hexdigest()
        batch.append(row)
        if len(batch) == 1000:
            OutstandingToken.objects.bulk_update(batch, ["token"])
            batch = []
    OutstandingToken.objects.bulk_update(batch, ["token"])


class Migration(migrations.Migration):
    dependencies = [
        ("identity", "0007_refresh_token_rotation"),
    ]

    operations = [migrations.RunPython(digest_tokens, migrations.RunPython.noop)]
