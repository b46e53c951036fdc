"""OpenShift payload uploads, without Dagster.

:mod:`~koku_dagster.uploads.announcements` parses announcements, :mod:`~koku_dagster.uploads.intake`
records a Kafka batch of them in ``ocp_payload_upload`` (:mod:`~koku_dagster.uploads.upload_records`),
:mod:`~koku_dagster.uploads.processing` processes one upload, and
:mod:`~koku_dagster.uploads.validation` sends its result to the validation topic.
"""
