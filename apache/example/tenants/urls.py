from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path('whoami', views.whoami),
    path('admin/whoami', views.whoami),
    path('admin/', admin.site.urls),
    path('sleep', views.sleep),
]
