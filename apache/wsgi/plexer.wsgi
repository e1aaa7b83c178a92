# plexer's WSGI entry point: one Django per slot, a mod_wsgi daemon process group serving one account at a time
# (src/accounts/model.ts): without a pool a slot of its own per account, named after it; with one, slot-1 …
# slot-N bound to accounts on demand (see "Slots of a pool" below).
#
# Apache (config from src/apache/render/) routes each authenticated user to the slot of their account with keyed
# map answers ("alice=alpha …", src/apache/render/keyed-routing.ts) and WSGIProcessGroup %{ENV:PROCESS_GROUP},
# and sets PLEXER_SETTINGS (the account's Django settings module) and PLEXER_DATA_ROOT in the request environ.
# The account's data directory is PLEXER_DATA_ROOT/ACCOUNT (0700, owned by the user its slot runs as), named
# after the account of the process group that really runs this process, never after anything in the request.
#
# Every daemon imports this script when it starts (WSGIImportScript, before any request and before any tenant
# code), and the first thing it does is seal what the daemon inherited from Apache's parent (see _seal below).
#
# Django reads DJANGO_SETTINGS_MODULE once per process, at the first request, so this script pins the settings
# module (and account) of the first request and fails closed on any request that disagrees with them, rather
# than ever serving one account's request with another account's settings or database:
#   - refuses to run embedded in Apache (empty mod_wsgi.process_group);
#   - refuses when Apache's routing variable PROCESS_GROUP differs from the process group actually serving;
#   - refuses a missing/malformed settings module, or one that differs from the pinned one.
# Request headers cannot spoof these: mod_wsgi exposes headers only as HTTP_* keys.
import ctypes
import fcntl
import importlib
import os
import re
import signal
import socket
import stat
import sys
import tempfile
import threading

# The daemons run as www-data or the tenant's own user, neither of which may write __pycache__ into the project.
sys.dont_write_bytecode = True

# An account's name (ACCOUNT_NAME_PATTERN, src/names.ts); slot names (slot-N) have the same shape.
_ACCOUNT = re.compile(r'^[a-z][a-z0-9_-]{0,62}$')
_MODULE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,15}$')

# ---- Sealing what Apache's parent left open ------------------------------------------------------------------
# mod_wsgi forks each daemon from Apache's root parent without exec, so the daemon starts with the parent's
# descriptors and shared memory: the write ends of the piped loggers (the watchdog's, plexer lockout's), both
# pipes of every prg: map, prefork's pipe of death, the access and login logs, the mutex lock files, and the
# login cache (mod_authn_socache's shmcb) mapped read-write. Tenant code holding them could reload Apache, lock
# users out, read other users' routes, hang every mapped request, or write a cache entry that logs anyone in.
# mod_wsgi itself keeps only its listener socket, its signal pipe (created after the fork) and stderr.
#
# Descriptors are not closed but pointed elsewhere (dup2), so a number Apache or mod_wsgi still writes to can
# never come back as a file tenant code opens later:
#   - a pipe whose both ends we hold gets a fresh private pipe at the same numbers: mod_wsgi's signal pipe keeps
#     working (it polls by number), the parent's pipes (pipe of death, loggers) are gone from here;
#   - every other pipe, socket, directory and regular file becomes /dev/null, except our own listening socket
#     and the error logs (tenant code writes to those through stderr anyway).
_DEVNULL = '/dev/null'
_ERROR_LOG = re.compile(r'error[^/]*\.log$')
# Every shared segment the parent made is unmapped: mod_authn_socache's login cache (an entry written there logs
# anyone in), mod_qos's per-address counters, and Apache's scoreboard, which a daemon does not need (mod_wsgi's
# requests leave it alone) and through which tenant code could make Apache's root parent signal any process of its
# own group at the next graceful restart, or think its workers idle and kill them. With no descriptor or name left
# for a segment, tenant code cannot map it back.


def _pipe_end(fd):
    return 'r' if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY else 'w'


def _is_own_listener(fd):
    try:
        s = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        return s.family == socket.AF_UNIX and s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    except OSError:
        return False
    finally:
        s.detach()


def _replace(fd, new_fd):
    nonblocking = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
    os.dup2(new_fd, fd, inheritable=os.get_inheritable(fd))
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK | nonblocking)


def _seal_descriptors():
    devnull = os.open(_DEVNULL, os.O_RDWR)
    stderr = os.fstat(2)
    kept = {(stderr.st_dev, stderr.st_ino)}
    pipes = {}
    try:
        for name in os.listdir('/proc/self/fd'):
            fd = int(name)
            if fd <= 2 or fd == devnull:
                continue
            try:
                st = os.fstat(fd)
                target = os.readlink('/proc/self/fd/%d' % fd)
            except OSError:
                continue  # the descriptor listdir itself used
            if stat.S_ISFIFO(st.st_mode):
                pipes.setdefault(st.st_ino, {'r': [], 'w': []})[_pipe_end(fd)].append(fd)
            elif stat.S_ISSOCK(st.st_mode):
                if not _is_own_listener(fd):
                    _replace(fd, devnull)
            elif stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) not in kept and not _ERROR_LOG.search(target.replace(' (deleted)', '')):
                    _replace(fd, devnull)
            elif stat.S_ISCHR(st.st_mode) and target != _DEVNULL:
                _replace(fd, devnull)
        for ends in pipes.values():
            if ends['r'] and ends['w']:
                r, w = os.pipe()
                for fd in ends['r']:
                    _replace(fd, r)
                for fd in ends['w']:
                    _replace(fd, w)
                os.close(r)
                os.close(w)
            else:
                for fd in ends['r'] + ends['w']:
                    _replace(fd, devnull)
    finally:
        os.close(devnull)


def _unmap_shared_memory():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    with open('/proc/self/maps') as maps:
        shared = [line.split() for line in maps if line.split()[1].endswith('s')]
    for fields in shared:
        # Anonymous or SysV segments whatever their mode, and anything shared that can be written (a module's
        # segment in a named file too). A read-only file shared by the C library (gconv's cache) stays.
        anonymous = len(fields) >= 6 and (fields[5] == '/dev/zero' or fields[5].startswith('/SYSV'))
        if not anonymous and 'w' not in fields[1] and len(fields) >= 6:
            continue
        start, end = (int(x, 16) for x in fields[0].split('-'))
        if libc.munmap(start, end - start) != 0:
            raise OSError(ctypes.get_errno(), 'munmap of a shared segment inherited from Apache failed')


def _seal():
    # A signal that arrives while the signal pipe is being swapped would write to the old one and be lost.
    blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGXCPU}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        _seal_descriptors()
        _unmap_shared_memory()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


try:
    import mod_wsgi
except ImportError:  # outside Apache (a test or a tool importing this file): nothing inherited to seal
    mod_wsgi = None
if mod_wsgi is not None and mod_wsgi.process_group:
    _seal()


_lock = threading.Lock()
_pinned = {'account': None, 'settings': None, 'app': None}

# ---- Slots of a pool (src/apache/render/pool.ts) ---------------------------------------------------------------
# A slot's home is STATE/slots/SLOT, where `plexer binder` writes `binding`: the account it serves, its settings and
# data directory. The binder writes it only for a fresh process (one that has served nobody: it kills every process
# of the slot's user before it gives the slot to another account) and after it has handed the account's directory
# to the slot's user, so a process believes the file only when that directory is its own user's. A free slot's
# process waits with Django's code imported; the first request after a binding reads the file, loads that
# account's settings, and from then on the process serves that account alone: every request must be routed for it
# (PLEXER_ACCOUNT, set by the rules from the map), anything else is refused before application code runs.
_SLOT = re.compile(r'^slot-[1-9][0-9]{0,2}$')
# What a free slot imports while it waits: Django's modules that need no settings (its apps' models do), the ones
# a site with the admin, sessions and CSRF protection loads at its first request anyway.
_PRELOAD = (
    'django.core.handlers.wsgi',
    'django.db.models',
    'django.db.backends.sqlite3.base',
    'django.db.migrations.executor',
    'django.forms',
    'django.template.defaulttags',
    'django.template.loader_tags',
    'django.contrib.admin.sites',
    'django.contrib.sessions.middleware',
    'django.contrib.messages.middleware',
    'django.middleware.csrf',
)
_pool = {'slot': False, 'binding': None, 'home': None}


def _read_binding(path):
    try:
        with open(path) as f:
            fields = dict(line.rstrip('\n').split('=', 1) for line in f if '=' in line)
    except OSError:
        return None
    account, settings, data_dir = fields.get('account', ''), fields.get('settings', ''), fields.get('data_dir', '')
    if not (_ACCOUNT.match(account) and _MODULE.match(settings) and data_dir.startswith('/')):
        print('plexer.wsgi: ignoring a malformed binding in %s' % path, file=sys.stderr)
        return None
    try:
        st = os.lstat(data_dir)
    except OSError:
        st = None
    if st is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        print('plexer.wsgi: binding for %s ignored: %s is not this slot user\'s directory' % (account, data_dir), file=sys.stderr)
        return None
    return {'account': account, 'settings': settings, 'data_dir': data_dir}


def _bind_from_file():
    binding = _pool['binding'] = _read_binding(os.path.join(_pool['home'], 'binding'))
    if binding is None:
        return
    try:
        _pinned['app'] = _load(binding['account'], binding['settings'], binding['data_dir'])
        _pinned['account'], _pinned['settings'] = binding['account'], binding['settings']
    except Exception as exc:  # the next request tries again, and says why
        print('plexer.wsgi: loading %s for %s failed: %r' % (binding['settings'], binding['account'], exc), file=sys.stderr)


def _start_slot():
    process_group = mod_wsgi.process_group
    home = os.getcwd()
    if not _SLOT.match(process_group) or os.path.basename(home) != process_group or os.path.basename(os.path.dirname(home)) != 'slots':
        return
    _pool['slot'], _pool['home'] = True, home
    # Bound already (after a reload): load the account now. Free: import Django's code, so that a binding pays
    # only for the account's own settings and applications.
    _bind_from_file()
    if _pool['binding'] is None:
        for module in _PRELOAD:
            try:
                importlib.import_module(module)
            except Exception as exc:
                print('plexer.wsgi: preloading %s failed: %r' % (module, exc), file=sys.stderr)


def _refuse(environ, start_response, status, message):
    print('plexer.wsgi: %s (group=%r routed=%r account=%r settings=%r)' % (
        message, environ.get('mod_wsgi.process_group'), environ.get('PROCESS_GROUP'),
        environ.get('PLEXER_ACCOUNT'), environ.get('PLEXER_SETTINGS')), file=environ['wsgi.errors'])
    body = ('%s\n' % message).encode('utf-8')
    headers = [('Content-Type', 'text/plain; charset=utf-8'), ('Content-Length', str(len(body))), ('Cache-Control', 'no-store')]
    if status.startswith('503'):
        headers.append(('Retry-After', '1'))
    start_response(status, headers)
    return [body]


def _load(account, settings, data_dir):
    # Environment for the settings module (tenants/settings_base.py reads these). Set before Django loads,
    # overriding anything inherited from Apache's environment. `account` matched _ACCOUNT: no "/" or "..".
    os.environ['DJANGO_SETTINGS_MODULE'] = settings
    # The account, under the name projects' settings already read (apache/example/tenants/settings_base.py).
    os.environ['PLEXER_GROUP'] = account
    if data_dir:
        os.environ['PLEXER_DATA_DIR'] = data_dir
    if _pool['slot']:
        # Temporary files (Django's uploads, tempfile) in the account's own directory: a slot's user serves
        # other accounts later, and what it leaves in /tmp would be theirs to read.
        tmp = os.path.join(data_dir, '.tmp')
        os.makedirs(tmp, mode=0o700, exist_ok=True)
        os.environ['TMPDIR'] = tmp
        tempfile.tempdir = None
    from django.core.wsgi import get_wsgi_application
    app = get_wsgi_application()
    # The project's own preparation (the example migrates a new account's database), once per process, before any
    # request is served; if it fails the process stays unloaded and the next request tries again.
    from django.conf import settings as project
    prepare = getattr(project, 'PLEXER_PREPARE', None)
    if prepare:
        from django.utils.module_loading import import_string
        import_string(prepare)()
    return app


def _pinned_app(environ, start_response, account, settings, data_dir):
    app = _pinned['app']
    if app is None:
        with _lock:
            if _pinned['app'] is None:
                try:
                    _pinned['app'] = _load(account, settings, data_dir)
                except Exception as exc:  # left unpinned: the next request retries
                    print('plexer.wsgi: loading %s failed: %r' % (settings, exc), file=environ['wsgi.errors'])
                    return None
                _pinned['account'] = account
                _pinned['settings'] = settings
            app = _pinned['app']
    return app


def _serve_slot(environ, start_response):
    if _pool['binding'] is None:
        with _lock:
            if _pool['binding'] is None:
                _bind_from_file()
    binding = _pool['binding']
    if binding is None:
        return _refuse(environ, start_response, '503 Service Unavailable', 'this slot serves no account')
    if environ.get('PLEXER_ACCOUNT', '') != binding['account']:
        # A request routed just before its account lost this slot (or a forged route): never served here. 503,
        # since asked again it finds its account's own slot.
        return _refuse(environ, start_response, '503 Service Unavailable', 'request for another account than this slot serves')
    app = _pinned_app(environ, start_response, binding['account'], binding['settings'], binding['data_dir'])
    if app is None:
        return _refuse(environ, start_response, '500 Internal Server Error', 'application failed to load')
    return app(environ, start_response)


# Without a pool a slot is the account's own, named after it (ownSlotName in src/accounts/model.ts): the process
# group names the account it serves.
def _own_slot_account(process_group):
    return process_group


def application(environ, start_response):
    process_group = environ.get('mod_wsgi.process_group', '')
    routed = environ.get('PROCESS_GROUP', '')
    settings = environ.get('PLEXER_SETTINGS', '')
    if not process_group or not _ACCOUNT.match(process_group):
        return _refuse(environ, start_response, '500 Internal Server Error', 'refusing to run outside a plexer daemon group')
    if routed != process_group:
        return _refuse(environ, start_response, '500 Internal Server Error', 'request routed to a different group')
    if _pool['slot']:
        return _serve_slot(environ, start_response)
    account = _own_slot_account(process_group)
    if not _MODULE.match(settings):
        return _refuse(environ, start_response, '503 Service Unavailable', 'no settings module for this group')
    data_root = environ.get('PLEXER_DATA_ROOT', '')
    app = _pinned_app(environ, start_response, account, settings, os.path.join(data_root, account) if data_root else '')
    if app is None:
        return _refuse(environ, start_response, '500 Internal Server Error', 'application failed to load')
    if _pinned['account'] != account or _pinned['settings'] != settings:
        return _refuse(environ, start_response, '500 Internal Server Error',
                       'settings changed since this process started (%s); restart the group' % _pinned['settings'])
    return app(environ, start_response)


if mod_wsgi is not None and mod_wsgi.process_group:
    _start_slot()
