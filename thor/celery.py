import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thor.settings")

app = Celery("thor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
