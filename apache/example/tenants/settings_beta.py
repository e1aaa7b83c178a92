from .settings_base import *  # noqa: F401,F403

TENANT_LABEL = 'Beta Ltd'
