from rest_framework import serializers

from identity.models import Tenant, User


class RegisterInputSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    tenant = serializers.SlugField(max_length=50, required=False, allow_blank=False)
    marketing_opt_in = serializers.BooleanField(required=False, default=False)


class TenantOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["slug", "name", "currency"]


class UserOutputSerializer(serializers.ModelSerializer):
    tenant = TenantOutputSerializer()

    class Meta:
        model = User
        fields = ["id", "email", "role", "marketing_opt_in", "tenant", "date_joined"]


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RegisterOutputSerializer(serializers.Serializer):
    user = UserOutputSerializer()
    tokens = TokenPairSerializer()


class LogoutInputSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=2000)


class RefreshInputSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=2000)


class SocialLoginFieldsSerializer(serializers.Serializer):
    """Seed 004's redirect fields, as `POST /api/auth/exchange` answers them (with a refresh token)."""

    access_token = serializers.CharField()
    token_type = serializers.CharField()
    role = serializers.CharField()
    user_id = serializers.CharField()
    expires_in = serializers.CharField()
    email = serializers.CharField()
    marketing_opt_in = serializers.CharField()
    agent = serializers.CharField()
    provider = serializers.CharField()
    refresh_token = serializers.CharField()


class CodeExchangeInputSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=200)


class SocialIdentityOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    provider = serializers.CharField()
    subject = serializers.CharField()
    email = serializers.CharField()
    email_verified = serializers.BooleanField()
    display_name = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_login_at = serializers.DateTimeField(allow_null=True)
