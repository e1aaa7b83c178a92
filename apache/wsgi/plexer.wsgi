# plexer's WSGI entry point: one Django per mod_wsgi daemon process group (one group per tenant).
#
# Apache (config from src/apache/render.ts) routes each authenticated user to their group with
#   RewriteRule ^ - [E=PROCESS_GROUP:${plexer_group:%{REMOTE_USER}|_none_}]  +  WSGIProcessGroup %{ENV:PROCESS_GROUP}
# and sets PLEXER_SETTINGS (the group's Django settings module) and PLEXER_DATA_ROOT in the request environ.
# The group's own data directory is PLEXER_DATA_ROOT/GROUP (0700, owned by the group's run-as user), named
# after the group that really runs this process, never after anything in the request.
#
# Django reads DJANGO_SETTINGS_MODULE once per process, at the first request, so this script pins the settings
# module (and group) of the first request and fails closed on any request that disagrees with them, rather
# than ever serving one tenant's request with another tenant's settings or database:
#   - refuses to run embedded in Apache (empty mod_wsgi.process_group);
#   - refuses when Apache's routing variable PROCESS_GROUP differs from the group actually serving;
#   - refuses a missing/malformed settings module, or one that differs from the pinned one.
# Request headers cannot spoof these: mod_wsgi exposes headers only as HTTP_* keys.
import os
import re
import sys
import threading

# The daemons run as www-data or the tenant's own user, neither of which may write __pycache__ into the project.
sys.dont_write_bytecode = True

_GROUP = re.compile(r'^[a-z][a-z0-9_-]{0,62}$')
_MODULE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,15}$')

_lock = threading.Lock()
_pinned = {'group': None, 'settings': None, 'app': None}


def _refuse(environ, start_response, status, message):
    print('plexer.wsgi: %s (group=%r routed=%r settings=%r)' % (
        message, environ.get('mod_wsgi.process_group'), environ.get('PROCESS_GROUP'),
        environ.get('PLEXER_SETTINGS')), file=environ['wsgi.errors'])
    body = ('%s\n' % message).encode('utf-8')
    start_response(status, [('Content-Type', 'text/plain; charset=utf-8'),
                            ('Content-Length', str(len(body))),
                            ('Cache-Control', 'no-store')])
    return [body]


def _load(group, settings, data_root):
    # Environment for the settings module (tenants/settings_base.py reads these). Set before Django loads,
    # overriding anything inherited from Apache's environment. `group` matched _GROUP: no "/" or "..".
    os.environ['DJANGO_SETTINGS_MODULE'] = settings
    os.environ['PLEXER_GROUP'] = group
    if data_root:
        os.environ['PLEXER_DATA_DIR'] = os.path.join(data_root, group)
    from django.core.wsgi import get_wsgi_application
    return get_wsgi_application()


def application(environ, start_response):
    group = environ.get('mod_wsgi.process_group', '')
    routed = environ.get('PROCESS_GROUP', '')
    settings = environ.get('PLEXER_SETTINGS', '')
    if not group or not _GROUP.match(group):
        return _refuse(environ, start_response, '500 Internal Server Error', 'refusing to run outside a plexer daemon group')
    if routed != group:
        return _refuse(environ, start_response, '500 Internal Server Error', 'request routed to a different group')
    if not _MODULE.match(settings):
        return _refuse(environ, start_response, '503 Service Unavailable', 'no settings module for this group')

    app = _pinned['app']
    if app is None:
        with _lock:
            if _pinned['app'] is None:
                try:
                    _pinned['app'] = _load(group, settings, environ.get('PLEXER_DATA_ROOT', ''))
                except Exception as exc:  # left unpinned: the next request retries
                    print('plexer.wsgi: loading %s failed: %r' % (settings, exc), file=environ['wsgi.errors'])
                    return _refuse(environ, start_response, '500 Internal Server Error', 'application failed to load')
                _pinned['group'] = group
                _pinned['settings'] = settings
            app = _pinned['app']
    if _pinned['group'] != group or _pinned['settings'] != settings:
        return _refuse(environ, start_response, '500 Internal Server Error',
                       'settings changed since this process started (%s); restart the group' % _pinned['settings'])
    return app(environ, start_response)
