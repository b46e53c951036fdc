-- reporting_azurecostentrylineitem_daily_summary for one provider and month, from the month's Azure
-- line items ($line_item_files; Azure has no separate daily table), for the days in [$start, $end).
-- Grain: day x subscription x service (meter category) x location x instance type (AdditionalInfo
-- ServiceType) x unit x currency x tags. A unit with a numeric prefix ("10 GB") is split: the quantity
-- is multiplied by the factor and the unit keeps the rest ("GB"). Empty texts become NULL.
WITH items AS (
    SELECT
        *,
        regexp_extract(unitofmeasure, '^(\d+(?:\.\d+)?) +(\S.*)$', ['factor', 'unit']) AS parsed_unit
    FROM read_parquet($line_item_files)
    WHERE "date" >= $start AND "date" < $end
)
SELECT
    CAST("date" AS DATE) AS usage_start,
    CAST("date" AS DATE) AS usage_end,
    nullif(subscriptionid, '') AS subscription_guid,
    nullif(metercategory, '') AS service_name,
    nullif(resourcelocation, '') AS resource_location,
    nullif(json_extract_string(CASE WHEN json_valid(additionalinfo) THEN additionalinfo END, '$.ServiceType'), '')
        AS instance_type,
    coalesce(nullif(parsed_unit.unit, ''), nullif(unitofmeasure, '')) AS unit_of_measure,
    nullif(billingcurrency, '') AS currency,
    tags,
    max(nullif(subscriptionname, '')) AS subscription_name,
    sum(quantity * coalesce(TRY_CAST(nullif(parsed_unit.factor, '') AS DOUBLE), 1)) AS usage_quantity,
    sum(costinbillingcurrency) AS pretax_cost,
    count(DISTINCT nullif(resourceid, '')) AS instance_count,
    count(*) AS line_item_count,
    CAST($source_uuid AS VARCHAR) AS source_uuid
FROM items
GROUP BY ALL
