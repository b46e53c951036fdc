-- reporting_gcpcostentrylineitem_daily_summary for one provider and invoice month, from the month's
-- daily line items ($daily_files), passes split by usage day as in gcp_line_items_daily.sql. Grain: day x
-- billing account x project x service x sku x region x pricing unit x currency x invoice month x labels.
-- Usage is counted in pricing units (Koku). Empty texts become NULL.
SELECT
    CAST(usage_start_time AS DATE) AS usage_start,
    CAST(usage_start_time AS DATE) AS usage_end,
    nullif(billing_account_id, '') AS account_id,
    nullif(project_id, '') AS project_id,
    nullif(service_id, '') AS service_id,
    nullif(sku_id, '') AS sku_id,
    nullif(location_region, '') AS region,
    nullif(usage_pricing_unit, '') AS unit,
    nullif(currency, '') AS currency,
    invoice_month,
    labels AS tags,
    max(nullif(project_name, '')) AS project_name,
    max(nullif(service_description, '')) AS service_alias,
    max(nullif(sku_description, '')) AS sku_alias,
    sum(usage_amount_in_pricing_units) AS usage_amount,
    sum(cost) AS unblended_cost,
    sum(credit_amount) AS credit_amount,
    CAST(sum(line_item_count) AS BIGINT) AS line_item_count,
    CAST($source_uuid AS VARCHAR) AS source_uuid
FROM read_parquet($daily_files)
WHERE (usage_start_time >= $start OR $start = $month_start) AND (usage_start_time < $end OR $end = $month_end)
GROUP BY ALL
