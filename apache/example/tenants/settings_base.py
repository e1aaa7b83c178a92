# Shared settings of the example tenant project. The per-tenant modules (settings_alpha, settings_beta, …)
# import this and override what differs. Each tenant gets its own SQLite database, named after the mod_wsgi
# daemon process group that runs it, in PLEXER_DATA_DIR: the group's own directory (DATA-ROOT/GROUP, 0700,
# owned by the group's run-as user, so no other tenant can open it). apache/wsgi/plexer.wsgi sets
# PLEXER_GROUP and PLEXER_DATA_DIR before Django loads; there is no fallback, so a misconfigured process fails
# to start instead of sharing a database.
import os

PLEXER_GROUP = os.environ['PLEXER_GROUP']
PLEXER_DATA_DIR = os.environ['PLEXER_DATA_DIR']

# Example only. A real deployment reads this from a file readable by www-data.
SECRET_KEY = 'plexer-example-not-secret'
DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1', 'localhost', '[::1]']
ROOT_URLCONF = 'tenants.urls'
INSTALLED_APPS = []
MIDDLEWARE = []
USE_TZ = True
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'

TENANT_LABEL = 'tenant %s' % PLEXER_GROUP

# An error inside a view goes to Apache's error log (Django alone logs it only with DEBUG on).
LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {'stderr': {'class': 'logging.StreamHandler'}},
    'loggers': {'django.request': {'handlers': ['stderr'], 'level': 'ERROR'}},
}

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.sqlite3',
        'NAME': os.path.join(PLEXER_DATA_DIR, '%s.sqlite3' % PLEXER_GROUP),
    }
}
