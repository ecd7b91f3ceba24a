"""The upload views: streamed straight to storage, and Django's default path to compare.

``POST /upload`` (a form with one or more ``file`` fields) streams each
file to the storage while the body arrives: ``@streaming_upload`` sets the
handler, checks CSRF, and answers 413 (over ``UPLOAD_MAX_SIZE``), 504 (the
storage did not take it within ``UPLOAD_TIMEOUT``) or 502 (it refused).
The view then finds each stored file in ``request.FILES`` and keeps its
name in a ``FileField``, with no second upload.
"""

from django.conf import settings
from django.http import FileResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from upclient.contrib.django import streaming_upload

from .models import Document, Picture


def _described(doc):
    return {"id": doc.pk, "name": doc.file.name, "original_name": doc.original_name, "size": doc.file.size}


@require_POST
@streaming_upload(csrf=False, max_size=settings.UPLOAD_MAX_SIZE, timeout=settings.UPLOAD_TIMEOUT)
def upload(request):
    # csrf=False: this example is an API for scripts and tests; a site's own forms keep the check
    stored = request.FILES.getlist("file")
    if not stored:
        return JsonResponse({"error": "no file field in the form"}, status=400)
    docs = [Document.objects.create(file=f, original_name=f.name) for f in stored]
    return JsonResponse({"files": [_described(d) for d in docs]}, status=201)


@csrf_exempt
@require_POST
def classic_upload(request):
    """Django's default handlers: the body is spooled to a temporary file, then saved to the storage."""
    stored = request.FILES.getlist("file")
    docs = [Document.objects.create(file=f, original_name=f.name) for f in stored]
    return JsonResponse({"files": [_described(d) for d in docs]}, status=201)


@require_POST
@streaming_upload(csrf=False, max_size=50 * 1024 * 1024, timeout=settings.UPLOAD_TIMEOUT)
def picture(request):
    """An ImageField: its width and height are read from the stored image (lazily, in ranges)."""
    pic = Picture.objects.create(image=request.FILES["image"])
    return JsonResponse({"id": pic.pk, "name": pic.image.name, "width": pic.width, "height": pic.height},
                        status=201)


@require_GET
def download(request, pk):
    """The stored bytes, read from the storage in ranges as the response is sent."""
    doc = get_object_or_404(Document, pk=pk)
    return FileResponse(doc.file.open("rb"), as_attachment=True, filename=doc.original_name or None)
