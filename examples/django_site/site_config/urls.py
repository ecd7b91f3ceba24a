from django.urls import path

from uploads import views

urlpatterns = [
    path("upload", views.upload, name="upload"),
    path("upload/classic", views.classic_upload, name="classic-upload"),
    path("picture", views.picture, name="picture"),
    path("files/<int:pk>", views.download, name="download"),
]
