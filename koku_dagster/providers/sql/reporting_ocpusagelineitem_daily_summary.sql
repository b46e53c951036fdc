-- reporting_ocpusagelineitem_daily_summary for one cluster and month, from the month's daily line items
-- ($pod_daily, $storage_daily, $node_labels_daily, $namespace_labels_daily) and pod line items ($pod_items,
-- for node capacity: per-interval maxima summed per day). Labels merge node < namespace < pod/volume labels.
-- Pod rows: day x namespace x node x labels; seconds / 3600 -> hours, bytes / 2^30 -> GiB.
-- Storage rows: day x namespace x claim x volume x storage class x labels; byte-seconds / 86400 /
-- $days_in_month / 2^30 -> GiB-months; a volume seen from several nodes counts once (mean over its nodes).
WITH node_labels AS (
    SELECT usage_start, node, max(node_labels) AS labels FROM read_parquet($node_labels_daily) GROUP BY ALL
),
namespace_labels AS (
    SELECT usage_start, namespace, max(namespace_labels) AS labels FROM read_parquet($namespace_labels_daily) GROUP BY ALL
),
node_intervals AS (
    SELECT
        CAST(interval_start AS DATE) AS usage_start, node, interval_start,
        max(node_capacity_cpu_cores) AS cpu_cores,
        max(node_capacity_cpu_core_seconds) AS cpu_core_seconds,
        max(node_capacity_memory_bytes) AS memory_bytes,
        max(node_capacity_memory_byte_seconds) AS memory_byte_seconds
    FROM read_parquet($pod_items)
    GROUP BY ALL
),
node_capacity AS (
    SELECT
        usage_start, node,
        max(cpu_cores) AS node_capacity_cpu_cores,
        sum(cpu_core_seconds) / 3600 AS node_capacity_cpu_core_hours,
        max(memory_bytes) / 1073741824 AS node_capacity_memory_gigabytes,
        sum(memory_byte_seconds) / 3600 / 1073741824 AS node_capacity_memory_gigabyte_hours
    FROM node_intervals
    GROUP BY ALL
),
cluster_capacity AS (
    SELECT
        usage_start,
        sum(node_capacity_cpu_core_hours) AS cluster_capacity_cpu_core_hours,
        sum(node_capacity_memory_gigabyte_hours) AS cluster_capacity_memory_gigabyte_hours
    FROM node_capacity
    GROUP BY ALL
),
pods AS (
    SELECT
        p.usage_start, p.namespace, p.node,
        CAST(json_merge_patch(json_merge_patch(coalesce(nl.labels, '{}'), coalesce(ns.labels, '{}')), p.pod_labels) AS VARCHAR) AS pod_labels,
        max(p.resource_id) AS resource_id,
        sum(p.pod_usage_cpu_core_seconds) / 3600 AS pod_usage_cpu_core_hours,
        sum(p.pod_request_cpu_core_seconds) / 3600 AS pod_request_cpu_core_hours,
        sum(p.pod_limit_cpu_core_seconds) / 3600 AS pod_limit_cpu_core_hours,
        sum(p.pod_usage_memory_byte_seconds) / 3600 / 1073741824 AS pod_usage_memory_gigabyte_hours,
        sum(p.pod_request_memory_byte_seconds) / 3600 / 1073741824 AS pod_request_memory_gigabyte_hours,
        sum(p.pod_limit_memory_byte_seconds) / 3600 / 1073741824 AS pod_limit_memory_gigabyte_hours
    FROM read_parquet($pod_daily) AS p
    LEFT JOIN node_labels AS nl ON nl.usage_start = p.usage_start AND nl.node = p.node
    LEFT JOIN namespace_labels AS ns ON ns.usage_start = p.usage_start AND ns.namespace = p.namespace
    GROUP BY ALL
),
volume_nodes AS (
    SELECT
        s.usage_start, s.namespace, s.persistentvolumeclaim, s.persistentvolume, s.storageclass, s.node,
        CAST(json_merge_patch(json_merge_patch(json_merge_patch(coalesce(nl.labels, '{}'), coalesce(ns.labels, '{}')),
            s.persistentvolume_labels), s.persistentvolumeclaim_labels) AS VARCHAR) AS volume_labels,
        max(s.persistentvolumeclaim_capacity_bytes) AS capacity_bytes,
        max(s.persistentvolumeclaim_capacity_byte_seconds) AS capacity_byte_seconds,
        max(s.volume_request_storage_byte_seconds) AS request_byte_seconds,
        max(s.persistentvolumeclaim_usage_byte_seconds) AS usage_byte_seconds
    FROM read_parquet($storage_daily) AS s
    LEFT JOIN node_labels AS nl ON nl.usage_start = s.usage_start AND nl.node = s.node
    LEFT JOIN namespace_labels AS ns ON ns.usage_start = s.usage_start AND ns.namespace = s.namespace
    GROUP BY ALL
),
volumes AS (
    SELECT
        usage_start, namespace, persistentvolumeclaim, persistentvolume, storageclass, volume_labels,
        max(node) AS node,
        max(capacity_bytes) / 1073741824 AS persistentvolumeclaim_capacity_gigabyte,
        avg(capacity_byte_seconds) / 86400 / $days_in_month / 1073741824 AS persistentvolumeclaim_capacity_gigabyte_months,
        avg(request_byte_seconds) / 86400 / $days_in_month / 1073741824 AS volume_request_storage_gigabyte_months,
        avg(usage_byte_seconds) / 86400 / $days_in_month / 1073741824 AS persistentvolumeclaim_usage_gigabyte_months
    FROM volume_nodes
    GROUP BY ALL
)
SELECT
    usage_start, usage_start AS usage_end, CAST($cluster_id AS VARCHAR) AS cluster_id, 'Pod' AS data_source,
    namespace, node, resource_id, pod_labels,
    pod_usage_cpu_core_hours, pod_request_cpu_core_hours, pod_limit_cpu_core_hours,
    pod_usage_memory_gigabyte_hours, pod_request_memory_gigabyte_hours, pod_limit_memory_gigabyte_hours,
    node_capacity_cpu_cores, node_capacity_cpu_core_hours, node_capacity_memory_gigabytes,
    node_capacity_memory_gigabyte_hours, cluster_capacity_cpu_core_hours, cluster_capacity_memory_gigabyte_hours,
    CAST($source_uuid AS VARCHAR) AS source_uuid
FROM pods
LEFT JOIN node_capacity USING (usage_start, node)
LEFT JOIN cluster_capacity USING (usage_start)
UNION ALL BY NAME
SELECT
    usage_start, usage_start AS usage_end, CAST($cluster_id AS VARCHAR) AS cluster_id, 'Storage' AS data_source,
    namespace, node, persistentvolumeclaim, persistentvolume, storageclass, volume_labels,
    persistentvolumeclaim_capacity_gigabyte, persistentvolumeclaim_capacity_gigabyte_months,
    volume_request_storage_gigabyte_months, persistentvolumeclaim_usage_gigabyte_months,
    CAST($source_uuid AS VARCHAR) AS source_uuid
FROM volumes
