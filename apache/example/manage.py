#!/usr/bin/env python3
# Django's command line for the example project, per tenant: `plexer group exec NAME -- python3 manage.py migrate`
# gives it the group's DJANGO_SETTINGS_MODULE, PLEXER_GROUP and PLEXER_DATA_DIR, as the group's own user.
import sys

from django.core.management import execute_from_command_line

if __name__ == '__main__':
    execute_from_command_line(sys.argv)
