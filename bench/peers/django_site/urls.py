from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django2_resumable.views import resumable_upload

# The upload view as the package's README mounts it; CSRF off, as a JS client without a
# page would need.
urlpatterns = [path("resumable_upload/", csrf_exempt(resumable_upload))]
