-- OpenShift line items of one report type summed per day (Koku's openshift_{report_type}_line_items_daily),
-- from one month's line-item Parquet files ($line_item_files). The column list is filled in from the report type:
-- its grouping keys, then max() of its other texts, sum() of its *_seconds columns and max() of capacities.
SELECT
    CAST(interval_start AS DATE) AS usage_start,
    {columns},
    count(*) AS line_item_count
FROM read_parquet($line_item_files)
GROUP BY ALL
