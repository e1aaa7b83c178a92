import os
import threading
import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

_ready = threading.Lock()
_initialised = False


def _tenant_row():
    # No migrations at request time: the first request of a process creates the tenant's tiny table if needed
    # and records which settings module created the database.
    global _initialised
    with connection.cursor() as cursor:
        if not _initialised:
            with _ready:
                cursor.execute('CREATE TABLE IF NOT EXISTS plexer_tenant (k TEXT PRIMARY KEY, v TEXT NOT NULL)')
                cursor.execute('INSERT OR IGNORE INTO plexer_tenant (k, v) VALUES (%s, %s)',
                               ['label', settings.TENANT_LABEL])
                _initialised = True
        cursor.execute('SELECT v FROM plexer_tenant WHERE k = %s', ['label'])
        return cursor.fetchone()[0]


# whoami and sleep change nothing, and the tests ask them with every method (a POST replayed after a binding):
# no CSRF token needed. Every other form of the project (the admin's) needs one.
@csrf_exempt
def whoami(request):
    return JsonResponse({
        # The account (a pool's slot serves one at a time; without a pool the daemon group is the account).
        'group': os.environ.get('PLEXER_GROUP'),
        'slot': request.META.get('mod_wsgi.process_group'),
        'settings': os.environ.get('DJANGO_SETTINGS_MODULE'),
        'database': str(settings.DATABASES['default']['NAME']),
        'user': request.META.get('REMOTE_USER'),
        # The user as this account's Django knows it (RemoteUserMiddleware), and whether it may use the admin.
        'django_user': request.user.get_username() if request.user.is_authenticated else None,
        'staff': request.user.is_staff,
        'tenant_data': _tenant_row(),
        'pid': os.getpid(),
        # The OS account the daemon runs as (a group's run_as user, or www-data).
        'uid': os.getuid(),
        'gid': os.getgid(),
        'path': request.path,
        'script_name': request.META.get('SCRIPT_NAME'),
        # Set when Apache rewrote the request internally (prefix mode: /app/x -> /u/USER/app/x).
        'redirect_url': request.META.get('REDIRECT_URL'),
    })


@csrf_exempt
def sleep(request):
    # A request that keeps its slot busy for a while (?s=SECONDS, at most 10): the pool's tests and benchmark.
    try:
        seconds = min(max(float(request.GET.get('s', '1')), 0.0), 10.0)
    except ValueError:
        seconds = 1.0
    time.sleep(seconds)
    return whoami(request)
