from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from identity.sessions import SESSION_CLAIM, new_session_id


class ThorTokenObtainPairSerializer(TokenObtainPairSerializer):
    """Tokens carry the tenant and role, so a client can read them without a round trip, and the session id
    that logging out revokes (identity.sessions)."""

    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token["tenant"] = user.tenant.slug
        token["role"] = user.role
        token[SESSION_CLAIM] = new_session_id()
        return token

    def validate(self, attrs):
        # Emails are stored lowercased; a login typed with capitals is the same user.
        attrs[self.username_field] = attrs[self.username_field].strip().lower()
        return super().validate(attrs)


def token_pair_for(user) -> dict:
    refresh = ThorTokenObtainPairSerializer.get_token(user)
    return {"refresh": str(refresh), "access": str(refresh.access_token)}
