-- GCP line items summed per day (Koku's gcp_line_items_daily), from one invoice month's line-item
-- Parquet files ($line_item_files), for the usage days in [$start, $end). Usage may fall outside the
-- invoice month: the first pass also takes earlier days and the last pass later ones
-- ($start = $month_start / $end = $month_end), so every row lands in exactly one pass.
SELECT
    date_trunc('day', usage_start_time) AS usage_start_time,
    billing_account_id,
    service_id,
    service_description,
    sku_id,
    sku_description,
    project_id,
    project_name,
    location_location,
    location_country,
    location_region,
    location_zone,
    usage_unit,
    usage_pricing_unit,
    currency,
    invoice_month,
    cost_type,
    labels,
    system_labels,
    project_labels,
    count(*) AS line_item_count,
    sum(cost) AS cost,
    sum(credit_amount) AS credit_amount,
    sum(usage_amount) AS usage_amount,
    sum(usage_amount_in_pricing_units) AS usage_amount_in_pricing_units,
    max(currency_conversion_rate) AS currency_conversion_rate,
    max(export_time) AS export_time
FROM read_parquet($line_item_files)
WHERE (usage_start_time >= $start OR $start = $month_start) AND (usage_start_time < $end OR $end = $month_end)
GROUP BY ALL
