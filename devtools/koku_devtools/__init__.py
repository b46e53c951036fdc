"""Development tools of koku-dagster, installed next to the product but never shipped with it.

- :mod:`koku_devtools.platform_sources`: a stand-in Platform Sources service and its scripting client.
- :mod:`koku_devtools.services`: real local servers (Tansu, embedded PostgreSQL, SeaweedFS, moto, Azurite
  with the Entra ID / Cost Management stand-in, the BigQuery emulator).
- :mod:`koku_devtools.cloud_exports`: nise exports uploaded to Azurite and loaded into BigQuery billing tables.
- :mod:`koku_devtools.nise_reports`, :mod:`koku_devtools.payloads`, :mod:`koku_devtools.uploads`: demo
  and test data (nise reports, OpenShift payload tarballs, ingress announcements).
- :mod:`koku_devtools.demo`: ``make demo``.
"""
