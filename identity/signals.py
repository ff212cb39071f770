from corsheaders.signals import check_request_enabled
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from identity.models import Tenant

_ORIGINS_CACHE_KEY = "identity:tenant-origins"


def tenant_origins() -> frozenset[str]:
    origins = cache.get(_ORIGINS_CACHE_KEY)
    if origins is None:
        origins = frozenset(
            origin for allowed in Tenant.objects.values_list("allowed_origins", flat=True) for origin in allowed
        )
        cache.set(_ORIGINS_CACHE_KEY, origins, 60)
    return origins


@receiver(check_request_enabled)
def cors_allow_tenant_origins(sender, request, **kwargs):
    return request.headers.get("Origin", "") in tenant_origins()


@receiver([post_save, post_delete], sender=Tenant)
def forget_tenant_origins(sender, **kwargs):
    cache.delete(_ORIGINS_CACHE_KEY)
