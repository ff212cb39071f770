import factory

from accounts.services import trading_account_create_paper
from identity.models import Tenant, User

PASSWORD = "correct-horse-battery-staple"


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())
    allowed_origins = factory.LazyFunction(lambda: ["http://localhost:5173"])
    # Off here so that live-order tests are about what they name; the static-IP rule's own tests
    # (brokers/tests/test_egress*.py, accounts/tests/test_live_orders_static_ip.py) turn it on, as a new
    # tenant has it.
    live_orders_require_egress = False


class UserFactory(factory.django.DjangoModelFactory):
    """A user as sign-up makes them: with a primary paper account."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    tenant = factory.SubFactory(TenantFactory)
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def paper_account(self, create, extracted, **kwargs):
        if create and extracted is not False:
            self.save()
            trading_account_create_paper(user=self)
