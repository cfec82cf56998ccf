from django.db import models
from django2_resumable.fields import ResumableFileField


class Document(models.Model):
    """A model with the package's field: its view needs the field's content type."""

    file = ResumableFileField(upload_to="documents/", chunks_upload_to="resumable_chunks/")
