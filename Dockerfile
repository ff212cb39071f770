FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first: the layer is reused until requirements.lock changes. Every package is pinned with its
# hashes (make lock), so the image installs exactly what CI tested.
COPY requirements.lock .
RUN pip install --require-hashes -r requirements.lock

COPY . .
# The admin's static files, hashed and compressed for WhiteNoise. Production settings are needed for its
# storage; the secrets here are throwaway values that exist only for this one command.
RUN THOR_ENV=production DEBUG=false ALLOWED_HOSTS=build.invalid \
    SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    THOR_ENCRYPTION_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    python manage.py collectstatic --noinput -v0
RUN useradd --create-home --uid 10001 thor && chown -R thor:thor /app
USER thor

EXPOSE 8000
# thor.serve runs uvicorn (HTTP and /ws/ in one process) believing X-Forwarded-For only from
# THOR_FORWARDED_ALLOW_IPS (none when blank). docker-compose.yml runs the production split instead:
# `--server granian` for HTTP and this for /ws/, behind nginx (deploy/nginx.conf).
CMD ["python", "-m", "thor.serve", "--host", "0.0.0.0", "--port", "8000"]
