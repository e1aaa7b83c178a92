# `plexer group exec ACCOUNT -- python3 manage.py staff USER…`: makes users of the account superusers of its own
# Django admin, whether or not they have been here yet (RemoteUserMiddleware makes a user at its first request;
# createsuperuser refuses one that exists). --revoke takes it away again.
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Makes users staff and superusers of this account's admin (--revoke: no longer)."

    def add_arguments(self, parser):
        parser.add_argument('users', nargs='+')
        parser.add_argument('--revoke', action='store_true')

    def handle(self, *args, users, revoke, **options):
        model = get_user_model()
        for name in users:
            user, created = model._default_manager.get_or_create(**{model.USERNAME_FIELD: name})
            if created:
                user.set_unusable_password()
            user.is_staff = user.is_superuser = not revoke
            user.save()
            self.stdout.write('%s: %s' % (name, 'no longer staff' if revoke else 'staff and superuser'))
