"""Dagster resources: thin, configurable wrappers over the domain's clients."""

from koku_dagster.resources.app_db import ApplicationDatabase
from koku_dagster.resources.cloud_apis import CloudApisResource
from koku_dagster.resources.kafka import KafkaResource
from koku_dagster.resources.object_store import ObjectStoreResource
from koku_dagster.resources.platform_sources import PlatformSourcesResource

__all__ = [
    "ApplicationDatabase",
    "CloudApisResource",
    "KafkaResource",
    "ObjectStoreResource",
    "PlatformSourcesResource",
]
