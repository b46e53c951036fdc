-- GCP billing export line items (one invoice month) -> FOCUS 1.2 (docs/focus.md explains every choice).
-- Parameters: $files (line-item Parquet), $month_start, $month_end (the invoice month, end exclusive).
-- Each export row gives one charge row (its cost) and one Credit row per entry of its credits array.
-- The caller casts each FOCUS column to its type and adds x_SourceUuid and x_KokuProviderType.
-- CTEs are inlined, not materialized: the credit rows read the charges again, but only the rows with credits.
WITH li AS NOT MATERIALIZED (
    SELECT
        *,
        CASE
            WHEN cost_type IN ('', 'regular') THEN 'Usage'
            WHEN cost_type = 'tax' THEN 'Tax'
            ELSE 'Adjustment'  -- adjustment, rounding_error and any type Google adds later
        END AS charge_category,
        coalesce(cost, 0) AS billed
    FROM read_parquet($files, union_by_name = true, hive_partitioning = false)
),
service_categories(service, category) AS (
    VALUES
        ('Compute Engine', 'Compute'), ('Kubernetes Engine', 'Compute'), ('Cloud Run', 'Compute'),
        ('Cloud Functions', 'Compute'), ('App Engine', 'Compute'), ('Google Cloud VMware Engine', 'Compute'),
        ('Cloud Storage', 'Storage'), ('Filestore', 'Storage'), ('Backup and DR Service', 'Storage'),
        ('Cloud SQL', 'Databases'), ('Bigtable', 'Databases'), ('Cloud Bigtable', 'Databases'),
        ('Spanner', 'Databases'), ('Cloud Spanner', 'Databases'), ('Memorystore', 'Databases'),
        ('Firestore', 'Databases'), ('Cloud Firestore', 'Databases'), ('AlloyDB', 'Databases'),
        ('MongoDB', 'Databases'),
        ('Networking', 'Networking'), ('Network', 'Networking'), ('Cloud DNS', 'Networking'), ('CDN', 'Networking'),
        ('Cloud CDN', 'Networking'), ('VPC', 'Networking'), ('NAT', 'Networking'), ('Cloud NAT', 'Networking'),
        ('Route', 'Networking'), ('IP', 'Networking'), ('Firewall', 'Networking'), ('Traffic Director', 'Networking'),
        ('Private Service Connect', 'Networking'), ('Service Discovery', 'Networking'),
        ('Cloud Load Balancing', 'Networking'), ('Cloud Domains', 'Web'), ('Firebase', 'Mobile'),
        ('BigQuery', 'Analytics'), ('Dataflow', 'Analytics'), ('Dataproc', 'Analytics'), ('Pub/Sub', 'Integration'),
        ('Cloud Pub/Sub', 'Integration'), ('Looker', 'Analytics'),
        ('Vertex AI', 'AI and Machine Learning'), ('Cloud Vision API', 'AI and Machine Learning'),
        ('Cloud Logging', 'Management and Governance'), ('Cloud Monitoring', 'Management and Governance'),
        ('Stackdriver Logging', 'Management and Governance'), ('Stackdriver Monitoring', 'Management and Governance'),
        ('Cloud Armor', 'Security'), ('Cloud Key Management Service (KMS)', 'Security'),
        ('Secret Manager', 'Security'), ('Security Command Center', 'Security'),
        ('Identity Platform', 'Identity'), ('Cloud Build', 'Developer Tools'), ('Artifact Registry', 'Developer Tools'),
        ('Container Registry', 'Developer Tools'), ('Cloud IoT Core', 'Internet of Things'),
        ('Anthos', 'Multicloud'), ('Transcoder API', 'Media')
),
charges AS NOT MATERIALIZED (
    SELECT
        nullif(location_zone, '') AS AvailabilityZone,
        billed AS BilledCost,
        billing_account_id AS BillingAccountId,
        CAST(NULL AS VARCHAR) AS BillingAccountName,
        nullif(currency, '') AS BillingCurrency,
        CAST(NULL AS VARCHAR) AS CapacityReservationId,
        CAST(NULL AS VARCHAR) AS CapacityReservationStatus,
        charge_category AS ChargeCategory,
        CASE WHEN cost_type = 'adjustment' THEN 'Correction' END AS ChargeClass,
        nullif(sku_description, '') AS ChargeDescription,
        CASE WHEN charge_category = 'Usage' THEN 'Usage-Based' ELSE 'One-Time' END AS ChargeFrequency,
        coalesce(usage_end_time, usage_start_time) AS ChargePeriodEnd,
        usage_start_time AS ChargePeriodStart,
        CAST(NULL AS VARCHAR) AS CommitmentDiscountCategory,
        CAST(NULL AS VARCHAR) AS CommitmentDiscountId,
        CAST(NULL AS VARCHAR) AS CommitmentDiscountName,
        CAST(NULL AS DOUBLE) AS CommitmentDiscountQuantity,
        CAST(NULL AS VARCHAR) AS CommitmentDiscountStatus,
        CAST(NULL AS VARCHAR) AS CommitmentDiscountType,
        CAST(NULL AS VARCHAR) AS CommitmentDiscountUnit,
        CASE WHEN charge_category = 'Usage' THEN usage_amount END AS ConsumedQuantity,
        CASE WHEN charge_category = 'Usage' THEN nullif(usage_unit, '') END AS ConsumedUnit,
        -- The standard export has no list or contracted price: cost (before credits) stands for both.
        billed AS ContractedCost,
        CAST(NULL AS DOUBLE) AS ContractedUnitPrice,
        billed AS EffectiveCost,
        CAST(NULL AS VARCHAR) AS InvoiceId,
        'Google Cloud' AS InvoiceIssuerName,
        billed AS ListCost,
        CAST(NULL AS DOUBLE) AS ListUnitPrice,
        CASE WHEN charge_category = 'Usage' THEN 'Standard' END AS PricingCategory,
        CASE WHEN charge_category = 'Usage' THEN usage_amount_in_pricing_units END AS PricingQuantity,
        CASE WHEN charge_category = 'Usage' THEN nullif(usage_pricing_unit, '') END AS PricingUnit,
        'Google Cloud' AS ProviderName,
        'Google Cloud' AS PublisherName,
        coalesce(nullif(location_region, ''), nullif(location_location, '')) AS RegionId,
        coalesce(nullif(location_region, ''), nullif(location_location, '')) AS RegionName,
        nullif(resource_global_name, '') AS ResourceId,
        CASE WHEN nullif(resource_global_name, '') IS NOT NULL
            THEN coalesce(nullif(resource_name, ''), resource_global_name) END AS ResourceName,
        CAST(NULL AS VARCHAR) AS ResourceType,
        coalesce(category, 'Other') AS ServiceCategory,
        coalesce(nullif(service_description, ''), nullif(service_id, ''), 'Google Cloud') AS ServiceName,
        nullif(sku_id, '') AS SkuId,
        nullif(sku_description, '') AS SkuMeter,
        -- The standard export has one price per SKU (no tier): the SKU names the price.
        CASE WHEN charge_category = 'Usage' THEN nullif(sku_id, '') END AS SkuPriceId,
        nullif(project_id, '') AS SubAccountId,
        nullif(project_name, '') AS SubAccountName,
        -- Resource labels win over the project's labels of the same key.
        json_merge_patch(coalesce(project_labels, '{}'), coalesce(labels, '{}')) AS Tags,
        nullif(cost_type, '') AS x_CostType,
        nullif(service_id, '') AS x_ServiceId,
        invoice_month AS x_InvoiceMonth,
        CAST(NULL AS VARCHAR) AS x_CreditType,
        CAST(NULL AS VARCHAR) AS x_CreditId,
        system_labels AS x_SystemLabels,
        CASE WHEN credit_amount IS NOT NULL AND json_valid(credits) THEN credits END AS credits_json
    FROM li
    LEFT JOIN service_categories ON service_categories.service = li.service_description
),
credit_entries AS (
    SELECT
        * EXCLUDE (credits_json),
        unnest(from_json(credits_json, '[{"name": "VARCHAR", "amount": "DOUBLE", "type": "VARCHAR", "id": "VARCHAR"}]'))
            AS credit
    FROM charges
    WHERE credits_json IS NOT NULL AND credits_json NOT IN ('', '[]')
)
SELECT * EXCLUDE (credits_json) FROM charges
UNION ALL BY NAME
-- A credit is granted by Google against its charge row: same dimensions, its own amount, no quantities.
SELECT * EXCLUDE (credit) REPLACE (
    credit.amount AS BilledCost,
    'Credit' AS ChargeCategory,
    NULL AS ChargeClass,
    coalesce(credit.name, credit.type, 'Credit') AS ChargeDescription,
    'Usage-Based' AS ChargeFrequency,
    NULL AS ConsumedQuantity,
    NULL AS ConsumedUnit,
    credit.amount AS ContractedCost,
    credit.amount AS EffectiveCost,
    credit.amount AS ListCost,
    NULL AS PricingCategory,
    NULL AS PricingQuantity,
    NULL AS PricingUnit,
    NULL AS SkuPriceId,
    credit.type AS x_CreditType,
    credit.id AS x_CreditId
)
FROM credit_entries
WHERE coalesce(credit.amount, 0) <> 0
