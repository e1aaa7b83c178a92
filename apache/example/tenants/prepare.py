# Brings a new account's database up to date when its process first loads (settings PLEXER_PREPARE): accounts are
# created hourly and nobody should have to migrate each by hand. A database already current costs one look at
# Django's migration table. A lock in the account's own directory keeps two processes from migrating at once.
import fcntl
import os

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_if_needed():
    with open(os.path.join(settings.PLEXER_DATA_DIR, '.migrate.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            executor = MigrationExecutor(connection)
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                call_command('migrate', interactive=False, verbosity=0)
        finally:
            # This thread serves no request: its connection would stay open for the life of the process.
            connection.close()
