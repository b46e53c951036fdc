"""The provider-month workflow as plain functions (no Dagster): manifest records, polling rules,
provider loading, the workflow steps and the warehouse catalog."""
