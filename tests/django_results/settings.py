"""The smallest Django project that keeps Celery's results with django-celery-results.

The database comes from ``DJANGO_RESULTS_DATABASE_URL`` (a SQLAlchemy URL of the test database,
SQLite or PostgreSQL), so that each test's process points Django at that test's database.
"""

import os

from sqlalchemy.engine import make_url

_url = make_url(os.environ["DJANGO_RESULTS_DATABASE_URL"])

SECRET_KEY = "tests-only"
INSTALLED_APPS = ["django_celery_results"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

if _url.get_backend_name() == "sqlite":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _url.database}}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.database,
            "USER": _url.username,
            "PASSWORD": _url.password,
            "HOST": _url.host,
            "PORT": _url.port,
        }
    }
