-- AWS CUR line items -> FOCUS 1.2 (docs/focus.md explains every choice).
-- Parameters: $files (line-item Parquet), $month_start, $month_end (the billing period, end exclusive).
-- The caller casts each FOCUS column to its type and adds x_SourceUuid and x_KokuProviderType.
WITH li AS NOT MATERIALIZED (
    SELECT
        *,
        CASE
            WHEN lineitem_lineitemtype IN ('Usage', 'DiscountedUsage', 'SavingsPlanCoveredUsage') THEN 'Usage'
            WHEN lineitem_lineitemtype IN ('Fee', 'RIFee', 'SavingsPlanRecurringFee', 'SavingsPlanUpfrontFee')
                THEN 'Purchase'
            WHEN lineitem_lineitemtype = 'Tax' THEN 'Tax'
            WHEN lineitem_lineitemtype = 'Credit' OR lineitem_lineitemtype LIKE '%Discount' THEN 'Credit'
            ELSE 'Adjustment'  -- Refund, SavingsPlanNegation and any type AWS adds later
        END AS charge_category,
        CASE
            WHEN lineitem_lineitemtype LIKE 'SavingsPlan%' THEN nullif(savingsplan_savingsplanarn, '')
            WHEN lineitem_lineitemtype IN ('DiscountedUsage', 'RIFee', 'Fee')
                THEN nullif(reservation_reservationarn, '')
        END AS commitment_id,
        lineitem_lineitemtype IN ('DiscountedUsage', 'SavingsPlanCoveredUsage') AS covered,
        coalesce(lineitem_unblendedcost, 0) AS billed
    FROM read_parquet($files, union_by_name = true, hive_partitioning = false)
),
priced AS NOT MATERIALIZED (
    SELECT
        *,
        charge_category IN ('Usage', 'Purchase') AS priced,
        CASE WHEN charge_category IN ('Usage', 'Purchase') THEN
            coalesce(pricing_publicondemandcost, pricing_publicondemandrate * lineitem_usageamount, billed)
        ELSE billed END AS list_cost
    FROM li
),
service_categories(code, category) AS (
    VALUES
        ('AmazonEC2', 'Compute'), ('AWSLambda', 'Compute'), ('AmazonECS', 'Compute'), ('AmazonEKS', 'Compute'),
        ('ComputeSavingsPlans', 'Compute'), ('AmazonLightsail', 'Compute'), ('AWSBatch', 'Compute'),
        ('AmazonS3', 'Storage'), ('AmazonEFS', 'Storage'), ('AmazonGlacier', 'Storage'), ('AWSBackup', 'Storage'),
        ('AmazonFSx', 'Storage'),
        ('AmazonRDS', 'Databases'), ('AmazonDynamoDB', 'Databases'), ('AmazonElastiCache', 'Databases'),
        ('AmazonDocDB', 'Databases'), ('AmazonNeptune', 'Databases'), ('AmazonMemoryDB', 'Databases'),
        ('AmazonVPC', 'Networking'), ('AmazonCloudFront', 'Networking'), ('AmazonRoute53', 'Networking'),
        ('AWSDataTransfer', 'Networking'), ('AWSELB', 'Networking'), ('AmazonApiGateway', 'Networking'),
        ('AWSDirectConnect', 'Networking'), ('AWSGlobalAccelerator', 'Networking'),
        ('AmazonRedshift', 'Analytics'), ('AmazonAthena', 'Analytics'), ('AmazonKinesis', 'Analytics'),
        ('AWSGlue', 'Analytics'), ('AmazonES', 'Analytics'), ('ElasticMapReduce', 'Analytics'),
        ('AmazonQuickSight', 'Analytics'),
        ('AmazonSageMaker', 'AI and Machine Learning'), ('AmazonBedrock', 'AI and Machine Learning'),
        ('AmazonRekognition', 'AI and Machine Learning'), ('AmazonTextract', 'AI and Machine Learning'),
        ('AmazonCloudWatch', 'Management and Governance'), ('AWSConfig', 'Management and Governance'),
        ('AWSCloudTrail', 'Management and Governance'), ('AWSSystemsManager', 'Management and Governance'),
        ('AWSCostExplorer', 'Management and Governance'),
        ('awskms', 'Security'), ('AWSSecretsManager', 'Security'), ('AmazonGuardDuty', 'Security'),
        ('awswaf', 'Security'), ('AWSShield', 'Security'), ('AWSSecurityHub', 'Security'),
        ('AmazonCognito', 'Identity'), ('AWSDirectoryService', 'Identity'),
        ('AmazonSNS', 'Integration'), ('AWSQueueService', 'Integration'), ('AmazonMQ', 'Integration'),
        ('AWSEvents', 'Integration'), ('AmazonStates', 'Integration'),
        ('AWSCodeCommit', 'Developer Tools'), ('AWSCodePipeline', 'Developer Tools'),
        ('CodeBuild', 'Developer Tools'), ('AmazonECR', 'Developer Tools'),
        ('AWSIoT', 'Internet of Things'), ('AmazonWorkSpaces', 'Business Applications'),
        ('AmazonConnect', 'Business Applications'), ('AWSMigrationHub', 'Migration'),
        ('AWSDatabaseMigrationSvc', 'Migration'), ('AWSElementalMediaConvert', 'Media'),
        ('AWSAmplify', 'Mobile'), ('AmazonLightsailWeb', 'Web')
),
-- Every CTE is inlined, not materialized: the unused-commitment branch below reads the rows again, but
-- only its few SavingsPlanRecurringFee rows (the filter reaches the Parquet scan), which is far cheaper
-- than holding every mapped row in memory for the second reference.
usage_rows AS NOT MATERIALIZED (
    SELECT
        nullif(lineitem_availabilityzone, '') AS AvailabilityZone,
        billed AS BilledCost,
        bill_payeraccountid AS BillingAccountId,
        NULL AS BillingAccountName,
        nullif(lineitem_currencycode, '') AS BillingCurrency,
        CAST(NULL AS VARCHAR) AS CapacityReservationId,
        CAST(NULL AS VARCHAR) AS CapacityReservationStatus,
        charge_category AS ChargeCategory,
        CASE WHEN lineitem_lineitemtype = 'Refund' THEN 'Correction' END AS ChargeClass,
        nullif(lineitem_lineitemdescription, '') AS ChargeDescription,
        CASE
            WHEN lineitem_lineitemtype IN ('RIFee', 'SavingsPlanRecurringFee') THEN 'Recurring'
            WHEN charge_category = 'Usage' THEN 'Usage-Based'
            ELSE 'One-Time'
        END AS ChargeFrequency,
        coalesce(lineitem_usageenddate, lineitem_usagestartdate) AS ChargePeriodEnd,
        lineitem_usagestartdate AS ChargePeriodStart,
        CASE WHEN commitment_id IS NOT NULL THEN
            CASE WHEN lineitem_lineitemtype LIKE 'SavingsPlan%' THEN 'Spend' ELSE 'Usage' END
        END AS CommitmentDiscountCategory,
        commitment_id AS CommitmentDiscountId,
        CAST(NULL AS VARCHAR) AS CommitmentDiscountName,
        CAST(NULL AS DOUBLE) AS CommitmentDiscountQuantity,
        CASE WHEN commitment_id IS NOT NULL AND covered THEN 'Used' END AS CommitmentDiscountStatus,
        CASE WHEN commitment_id IS NOT NULL THEN
            CASE WHEN lineitem_lineitemtype LIKE 'SavingsPlan%' THEN 'Savings Plan' ELSE 'Reserved Instance' END
        END AS CommitmentDiscountType,
        CAST(NULL AS VARCHAR) AS CommitmentDiscountUnit,
        CASE WHEN charge_category = 'Usage' THEN lineitem_usageamount END AS ConsumedQuantity,
        CASE WHEN charge_category = 'Usage' THEN nullif(pricing_unit, '') END AS ConsumedUnit,
        -- Covered usage is billed at the commitment; its contracted (negotiated on-demand) cost is the list cost.
        CASE WHEN covered THEN list_cost ELSE billed END AS ContractedCost,
        CASE WHEN lineitem_lineitemtype = 'Usage' THEN lineitem_unblendedrate END AS ContractedUnitPrice,
        CASE
            WHEN lineitem_lineitemtype = 'DiscountedUsage' THEN coalesce(reservation_effectivecost, 0)
            WHEN lineitem_lineitemtype = 'SavingsPlanCoveredUsage'
                THEN coalesce(savingsplan_savingsplaneffectivecost, 0)
            -- Commitment fees and the negation of covered usage are amortised into the covered usage rows.
            WHEN lineitem_lineitemtype IN ('RIFee', 'SavingsPlanRecurringFee', 'SavingsPlanUpfrontFee',
                                           'SavingsPlanNegation') THEN 0
            WHEN lineitem_lineitemtype = 'Fee' AND commitment_id IS NOT NULL THEN 0
            ELSE billed
        END AS EffectiveCost,
        nullif(bill_invoiceid, '') AS InvoiceId,
        'AWS' AS InvoiceIssuerName,
        list_cost AS ListCost,
        CASE WHEN priced THEN pricing_publicondemandrate END AS ListUnitPrice,
        CASE
            WHEN NOT priced THEN NULL
            WHEN covered OR lineitem_lineitemtype LIKE 'SavingsPlan%' OR lineitem_lineitemtype = 'RIFee'
                OR commitment_id IS NOT NULL THEN 'Committed'
            WHEN lineitem_usagetype LIKE '%SpotUsage%' THEN 'Dynamic'
            WHEN pricing_term = 'OnDemand' THEN 'Standard'
            ELSE 'Other'
        END AS PricingCategory,
        CASE WHEN priced THEN lineitem_usageamount END AS PricingQuantity,
        CASE WHEN priced THEN nullif(pricing_unit, '') END AS PricingUnit,
        'AWS' AS ProviderName,
        CASE WHEN bill_billingentity = 'AWS Marketplace'
            THEN coalesce(nullif(lineitem_legalentity, ''), 'AWS Marketplace') ELSE 'AWS'
        END AS PublisherName,
        nullif(product_region, '') AS RegionId,
        nullif(product_location, '') AS RegionName,
        nullif(lineitem_resourceid, '') AS ResourceId,
        nullif(lineitem_resourceid, '') AS ResourceName,
        CASE WHEN nullif(lineitem_resourceid, '') IS NOT NULL THEN nullif(product_productfamily, '') END
            AS ResourceType,
        coalesce(category, 'Other') AS ServiceCategory,
        coalesce(nullif(product_productname, ''), nullif(lineitem_productcode, ''), 'AWS') AS ServiceName,
        nullif(product_sku, '') AS SkuId,
        nullif(lineitem_usagetype, '') AS SkuMeter,
        -- The CUR rate code is not kept in the line items: the SKU and its pricing term name the price.
        CASE WHEN priced AND nullif(product_sku, '') IS NOT NULL
            THEN product_sku || ':' || coalesce(nullif(pricing_term, ''), lineitem_lineitemtype) END AS SkuPriceId,
        nullif(lineitem_usageaccountid, '') AS SubAccountId,
        CAST(NULL AS VARCHAR) AS SubAccountName,
        resourcetags AS Tags,
        lineitem_lineitemtype AS x_LineItemType,
        nullif(lineitem_productcode, '') AS x_ProductCode,
        nullif(lineitem_operation, '') AS x_Operation,
        nullif(product_instancetype, '') AS x_InstanceType,
        costcategory AS x_CostCategories,
        savingsplan_totalcommitmenttodate - savingsplan_usedcommitment AS unused_commitment
    FROM priced
    LEFT JOIN service_categories ON service_categories.code = coalesce(
        nullif(priced.lineitem_productcode, ''), nullif(priced.product_servicecode, ''))
)
SELECT * EXCLUDE (unused_commitment) FROM usage_rows
UNION ALL BY NAME
-- The unused part of a savings plan's recurring fee: a Usage row billed at 0 whose EffectiveCost is what
-- the commitment cost without covering usage (the fee row itself has EffectiveCost 0).
SELECT * EXCLUDE (unused_commitment) REPLACE (
    0.0 AS BilledCost,
    'Usage' AS ChargeCategory,
    'Unused commitment: ' || coalesce(ChargeDescription, CommitmentDiscountId) AS ChargeDescription,
    'Usage-Based' AS ChargeFrequency,
    'Unused' AS CommitmentDiscountStatus,
    NULL AS ConsumedQuantity,
    NULL AS ConsumedUnit,
    0.0 AS ContractedCost,
    NULL AS ContractedUnitPrice,
    unused_commitment AS EffectiveCost,
    0.0 AS ListCost,
    NULL AS ListUnitPrice,
    'Committed' AS PricingCategory,
    NULL AS PricingQuantity,
    NULL AS PricingUnit
)
FROM usage_rows
WHERE x_LineItemType = 'SavingsPlanRecurringFee' AND CommitmentDiscountId IS NOT NULL AND unused_commitment > 0
