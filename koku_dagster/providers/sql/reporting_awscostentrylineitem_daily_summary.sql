-- reporting_awscostentrylineitem_daily_summary for one provider and month, from the month's daily line
-- items ($daily_files), for the days in [$start, $end). Grain: day x usage account x product code x
-- product family x region x availability zone x instance type x unit x currency x tags x cost category
-- (Koku's grouping; Marketplace rows use the product name as product code). Empty texts become NULL.
-- Rows are first summed per resource, so that resource_count is a plain count (much cheaper than
-- count(DISTINCT ...)).
WITH per_resource AS (
    SELECT
        CAST(lineitem_usagestartdate AS DATE) AS usage_start,
        nullif(lineitem_usageaccountid, '') AS usage_account_id,
        CASE
            WHEN bill_billingentity = 'AWS Marketplace' THEN coalesce(nullif(product_productname, ''), nullif(lineitem_productcode, ''))
            ELSE nullif(lineitem_productcode, '')
        END AS product_code,
        nullif(product_productfamily, '') AS product_family,
        nullif(product_region, '') AS region,
        nullif(lineitem_availabilityzone, '') AS availability_zone,
        nullif(product_instancetype, '') AS instance_type,
        nullif(pricing_unit, '') AS unit,
        nullif(lineitem_currencycode, '') AS currency_code,
        resourcetags AS tags,
        costcategory AS cost_category,
        nullif(lineitem_resourceid, '') AS resource_id,
        sum(CASE WHEN lineitem_lineitemtype = 'SavingsPlanNegation' THEN 0 ELSE lineitem_usageamount END) AS usage_amount,
        sum(lineitem_normalizedusageamount) AS normalized_usage_amount,
        max(lineitem_normalizationfactor) AS normalization_factor,
        max(lineitem_unblendedrate) AS unblended_rate,
        sum(lineitem_unblendedcost) AS unblended_cost,
        max(lineitem_blendedrate) AS blended_rate,
        sum(lineitem_blendedcost) AS blended_cost,
        sum(savingsplan_savingsplaneffectivecost) AS savingsplan_effective_cost,
        sum(CASE WHEN lineitem_lineitemtype LIKE 'SavingsPlan%' THEN coalesce(savingsplan_savingsplaneffectivecost, 0) ELSE lineitem_unblendedcost END) AS calculated_amortized_cost,
        sum(pricing_publicondemandcost) AS public_on_demand_cost,
        max(pricing_publicondemandrate) AS public_on_demand_rate,
        sum(line_item_count) AS line_item_count
    FROM read_parquet($daily_files)
    WHERE lineitem_usagestartdate >= $start AND lineitem_usagestartdate < $end
    GROUP BY ALL
)
SELECT
    usage_start, usage_start AS usage_end, usage_account_id, product_code, product_family, region, availability_zone,
    instance_type, unit, currency_code, tags, cost_category,
    count(resource_id) AS resource_count,
    sum(usage_amount) AS usage_amount,
    sum(normalized_usage_amount) AS normalized_usage_amount,
    max(normalization_factor) AS normalization_factor,
    max(unblended_rate) AS unblended_rate,
    sum(unblended_cost) AS unblended_cost,
    max(blended_rate) AS blended_rate,
    sum(blended_cost) AS blended_cost,
    sum(savingsplan_effective_cost) AS savingsplan_effective_cost,
    sum(calculated_amortized_cost) AS calculated_amortized_cost,
    sum(public_on_demand_cost) AS public_on_demand_cost,
    max(public_on_demand_rate) AS public_on_demand_rate,
    CAST(sum(line_item_count) AS BIGINT) AS line_item_count,
    CAST($source_uuid AS VARCHAR) AS source_uuid
FROM per_resource
GROUP BY ALL
