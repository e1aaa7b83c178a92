# Shared settings of the example tenant project. The per-tenant modules (settings_alpha, settings_beta, …)
# import this and override what differs. Each tenant gets its own SQLite database, named after the mod_wsgi
# daemon process group that runs it, in PLEXER_DATA_DIR: the group's own directory (DATA-ROOT/GROUP, 0700,
# owned by the group's run-as user, so no other tenant can open it). apache/wsgi/plexer.wsgi sets
# PLEXER_GROUP and PLEXER_DATA_DIR before Django loads; there is no fallback, so a misconfigured process fails
# to start instead of sharing a database.
import os
import secrets
import tempfile

PLEXER_GROUP = os.environ['PLEXER_GROUP']
PLEXER_DATA_DIR = os.environ['PLEXER_DATA_DIR']


def _secret_key(data_dir):
    # Each account's own, made at its first load in its own directory (0600): its sessions' and CSRF tokens'
    # signatures mean nothing to another account. Written whole before it takes its name (a process killed while
    # writing leaves no empty key behind); an empty or short one is made again.
    path = os.path.join(data_dir, '.secret_key')
    try:
        with open(path) as f:
            key = f.read().strip()
        if len(key) >= 40:
            return key
        os.unlink(path)
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(50)
    fd, temporary = tempfile.mkstemp(dir=data_dir, prefix='.secret_key.')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(key + '\n')
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:  # another process of the account made it first: theirs it is
            with open(path) as f:
                return f.read().strip()
    finally:
        os.unlink(temporary)
    return key


SECRET_KEY = _secret_key(PLEXER_DATA_DIR)
DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1', 'localhost', '[::1]']
ROOT_URLCONF = 'tenants.urls'
# What a user deploys: Django's admin, users, sessions and CSRF protection, each account with its own of each.
INSTALLED_APPS = [
    'django.contrib.admin',
    'django.contrib.auth',
    'django.contrib.contenttypes',
    'django.contrib.sessions',
    'django.contrib.messages',
    # The example's own commands (manage.py staff).
    'tenants',
]
# Apache has authenticated the user (plexer checked the password, or the login page's session): Django takes
# REMOTE_USER as it is ("Authentication using REMOTE_USER" in Django's docs) and makes the user in this account's
# own database at its first request. Who may use the account's admin is the account's business:
#   plexer group exec ACCOUNT -- python3 manage.py staff alice
MIDDLEWARE = [
    'django.middleware.security.SecurityMiddleware',
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
    'django.contrib.auth.middleware.RemoteUserMiddleware',
    'django.contrib.messages.middleware.MessageMiddleware',
    'django.middleware.clickjacking.XFrameOptionsMiddleware',
]
AUTHENTICATION_BACKENDS = ['django.contrib.auth.backends.RemoteUserBackend']
TEMPLATES = [
    {
        'BACKEND': 'django.template.backends.django.DjangoTemplates',
        'APP_DIRS': True,
        'OPTIONS': {
            'context_processors': [
                'django.template.context_processors.request',
                'django.contrib.auth.context_processors.auth',
                'django.contrib.messages.context_processors.messages',
            ],
        },
    },
]
# Sessions in a signed cookie (the account's own key): Apache authenticates every request, and a client without a
# cookie jar (Basic, curl) is logged in to Django at each one, which would otherwise write a session row each time.
SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'
# Every account's cookies share the host: names of their own, so they never meet plexer's login session.
SESSION_COOKIE_NAME = 'tenant_session'
CSRF_COOKIE_NAME = 'tenant_csrftoken'
SESSION_COOKIE_HTTPONLY = True
STATIC_URL = '/static/'
USE_TZ = True
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
# A new account's database is made at its process's first load (plexer.wsgi calls this once, before the first
# request); `plexer group exec ACCOUNT -- python3 manage.py migrate` does the same from the command line.
PLEXER_PREPARE = 'tenants.prepare.migrate_if_needed'

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
        # A daemon's threads write sessions side by side: wait for SQLite's lock rather than fail at once.
        'OPTIONS': {'timeout': 20},
    }
}
