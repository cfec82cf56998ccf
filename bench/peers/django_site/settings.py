"""The smallest Django site that serves django2-resumable's upload view, for the
benchmark's peer rows (bench/peers/run.sh). Not part of the crate."""
import os

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "benchmark-only"
DEBUG = os.environ.get("PEER_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django2_resumable", "docs"]
MIDDLEWARE = []
ROOT_URLCONF = "urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PEER_DB", os.path.join(BASE_DIR, "bench.sqlite3")),
    }
}
MEDIA_ROOT = os.environ.get("PEER_MEDIA_ROOT", os.path.join(BASE_DIR, "media"))
MEDIA_URL = "/media/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATA_UPLOAD_MAX_MEMORY_SIZE = None
LOGGING = {"version": 1, "disable_existing_loggers": False, "handlers": {"console": {"class": "logging.StreamHandler"}}, "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}}}
