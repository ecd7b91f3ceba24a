"""Files kept on the storage: a FileField and an ImageField, names as the storage gives them.

``max_length=255``: an UPYUN key is the name you choose, a FastDFS id about
50 characters, a tus name the upload's 32-character id (or its whole URL
when the server hands out URLs on another host), a community id the
server's.
"""

from django.db import models


class Document(models.Model):
    file = models.FileField(upload_to="documents/", max_length=255)
    original_name = models.CharField(max_length=255, blank=True)
    uploaded = models.DateTimeField(auto_now_add=True)


class Picture(models.Model):
    image = models.ImageField(upload_to="pictures/", max_length=255, width_field="width", height_field="height")
    width = models.PositiveIntegerField(null=True)
    height = models.PositiveIntegerField(null=True)
