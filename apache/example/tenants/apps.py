from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = 'tenants'

    def ready(self):
        # Apache authenticates every request and RemoteUserMiddleware logs a client without a session cookie (Basic,
        # curl) in to Django at each one: recording last_login each time would be a database write per request.
        from django.contrib.auth import user_logged_in
        from django.contrib.auth.models import update_last_login

        user_logged_in.disconnect(update_last_login, dispatch_uid='update_last_login')
