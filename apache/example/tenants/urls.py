from django.urls import path

from . import views

urlpatterns = [
    path('whoami', views.whoami),
    path('admin/whoami', views.whoami),
    path('sleep', views.sleep),
]
