# For groups that need nothing but their own database (TENANT_LABEL defaults to "tenant GROUP").
from .settings_base import *  # noqa: F401,F403
