-- Azure cost export line items (actual cost) -> FOCUS 1.2 (docs/focus.md explains every choice).
-- Parameters: $files (line-item Parquet), $month_start, $month_end (the billing period, end exclusive).
-- The caller casts each FOCUS column to its type and adds x_SourceUuid and x_KokuProviderType.
WITH li AS (
    SELECT
        *,
        lower(chargetype) AS charge_type,
        CASE
            WHEN lower(chargetype) IN ('', 'usage', 'unusedreservation', 'unusedsavingsplan') THEN 'Usage'
            WHEN lower(chargetype) IN ('purchase', 'refund') THEN 'Purchase'
            WHEN lower(chargetype) = 'tax' THEN 'Tax'
            WHEN lower(chargetype) = 'credit' THEN 'Credit'
            ELSE 'Adjustment'  -- RoundingAdjustment and any type Azure adds later
        END AS charge_category,
        lower(pricingmodel) IN ('reservation', 'savingsplan') AS committed,
        nullif(reservationid, '') AS commitment_id,
        coalesce(costinbillingcurrency, 0) AS billed,
        nullif(unitprice, 0) AS contracted_unit_price,
        nullif(paygprice, 0) AS list_unit_price
    FROM read_parquet($files, union_by_name = true, hive_partitioning = false)
),
priced AS (
    SELECT
        *,
        charge_category IN ('Usage', 'Purchase') AS priced,
        CASE WHEN charge_category IN ('Usage', 'Purchase') AND contracted_unit_price IS NOT NULL
            THEN contracted_unit_price * quantity ELSE billed END AS contracted_cost
    FROM li
),
service_categories(meter_category, category) AS (
    VALUES
        ('Virtual Machines', 'Compute'), ('Virtual Machine Licenses', 'Compute'), ('Functions', 'Compute'),
        ('Container Instances', 'Compute'), ('Azure Kubernetes Service', 'Compute'), ('Cloud Services', 'Compute'),
        ('Virtual Machine Scale Sets', 'Compute'), ('Azure Container Apps', 'Compute'), ('Batch', 'Compute'),
        ('Storage', 'Storage'), ('Backup', 'Storage'), ('Azure NetApp Files', 'Storage'),
        ('Bandwidth', 'Networking'), ('Virtual Network', 'Networking'), ('Load Balancer', 'Networking'),
        ('VPN Gateway', 'Networking'), ('Application Gateway', 'Networking'), ('Azure DNS', 'Networking'),
        ('Content Delivery Network', 'Networking'), ('ExpressRoute', 'Networking'), ('Network Watcher', 'Networking'),
        ('Azure Front Door Service', 'Networking'), ('Azure Firewall', 'Networking'), ('NAT Gateway', 'Networking'),
        ('SQL Database', 'Databases'), ('Azure Cosmos DB', 'Databases'), ('Redis Cache', 'Databases'),
        ('Azure Database for PostgreSQL', 'Databases'), ('Azure Database for MySQL', 'Databases'),
        ('SQL Managed Instance', 'Databases'),
        ('Azure Synapse Analytics', 'Analytics'), ('HDInsight', 'Analytics'), ('Azure Databricks', 'Analytics'),
        ('Event Hubs', 'Analytics'), ('Azure Data Explorer', 'Analytics'), ('Power BI Embedded', 'Analytics'),
        ('Cognitive Services', 'AI and Machine Learning'), ('Azure Machine Learning', 'AI and Machine Learning'),
        ('Azure OpenAI Service', 'AI and Machine Learning'),
        ('Azure Monitor', 'Management and Governance'), ('Log Analytics', 'Management and Governance'),
        ('Insight and Analytics', 'Management and Governance'), ('Automation', 'Management and Governance'),
        ('Key Vault', 'Security'), ('Microsoft Defender for Cloud', 'Security'), ('Sentinel', 'Security'),
        ('Azure Active Directory', 'Identity'), ('Microsoft Entra ID', 'Identity'),
        ('Service Bus', 'Integration'), ('Logic Apps', 'Integration'), ('API Management', 'Integration'),
        ('Event Grid', 'Integration'), ('Azure Data Factory v2', 'Integration'),
        ('IoT Hub', 'Internet of Things'), ('Azure App Service', 'Web'), ('Azure DevOps', 'Developer Tools'),
        ('Container Registry', 'Developer Tools'), ('Media Services', 'Media'), ('Azure Migrate', 'Migration')
)
SELECT
    CAST(NULL AS VARCHAR) AS AvailabilityZone,
    billed AS BilledCost,
    coalesce(nullif(billingaccountid, ''), nullif(billingprofileid, ''), subscriptionid) AS BillingAccountId,
    CAST(NULL AS VARCHAR) AS BillingAccountName,
    nullif(billingcurrency, '') AS BillingCurrency,
    CAST(NULL AS VARCHAR) AS CapacityReservationId,
    CAST(NULL AS VARCHAR) AS CapacityReservationStatus,
    charge_category AS ChargeCategory,
    CASE WHEN charge_type = 'refund' THEN 'Correction' END AS ChargeClass,
    coalesce(nullif(metername, ''), nullif(productname, '')) AS ChargeDescription,
    CASE
        WHEN lower(frequency) = 'recurring' THEN 'Recurring'
        WHEN lower(frequency) = 'onetime' THEN 'One-Time'
        WHEN charge_category IN ('Usage', 'Credit') THEN 'Usage-Based'
        ELSE 'One-Time'
    END AS ChargeFrequency,
    "date" + INTERVAL 1 DAY AS ChargePeriodEnd,
    "date" AS ChargePeriodStart,
    CASE WHEN commitment_id IS NOT NULL THEN
        CASE WHEN lower(pricingmodel) = 'savingsplan' THEN 'Spend' ELSE 'Usage' END
    END AS CommitmentDiscountCategory,
    commitment_id AS CommitmentDiscountId,
    CASE WHEN commitment_id IS NOT NULL THEN nullif(reservationname, '') END AS CommitmentDiscountName,
    CAST(NULL AS DOUBLE) AS CommitmentDiscountQuantity,
    CASE WHEN commitment_id IS NOT NULL AND charge_category = 'Usage' THEN
        CASE WHEN charge_type LIKE 'unused%' THEN 'Unused' ELSE 'Used' END
    END AS CommitmentDiscountStatus,
    CASE WHEN commitment_id IS NOT NULL THEN
        CASE WHEN lower(pricingmodel) = 'savingsplan' THEN 'Savings Plan' ELSE 'Reservation' END
    END AS CommitmentDiscountType,
    CAST(NULL AS VARCHAR) AS CommitmentDiscountUnit,
    CASE WHEN charge_category = 'Usage' AND charge_type NOT LIKE 'unused%' THEN quantity END AS ConsumedQuantity,
    CASE WHEN charge_category = 'Usage' AND charge_type NOT LIKE 'unused%' THEN nullif(unitofmeasure, '') END
        AS ConsumedUnit,
    contracted_cost AS ContractedCost,
    CASE WHEN priced THEN contracted_unit_price END AS ContractedUnitPrice,
    CASE
        -- Actual-cost exports bill commitment-covered usage at 0; EffectivePrice is the amortised rate.
        WHEN committed AND charge_category = 'Usage' THEN coalesce(effectiveprice * quantity, 0)
        -- A commitment purchase covers future usage, which carries its amortised cost.
        WHEN charge_category = 'Purchase' AND (committed OR commitment_id IS NOT NULL) THEN 0
        ELSE billed
    END AS EffectiveCost,
    nullif(invoiceid, '') AS InvoiceId,
    'Microsoft' AS InvoiceIssuerName,
    CASE WHEN priced AND list_unit_price IS NOT NULL THEN list_unit_price * quantity ELSE contracted_cost END
        AS ListCost,
    CASE WHEN priced THEN list_unit_price END AS ListUnitPrice,
    CASE
        WHEN NOT priced THEN NULL
        WHEN committed THEN 'Committed'
        WHEN lower(pricingmodel) = 'spot' THEN 'Dynamic'
        ELSE 'Standard'
    END AS PricingCategory,
    CASE WHEN priced THEN quantity END AS PricingQuantity,
    CASE WHEN priced THEN nullif(unitofmeasure, '') END AS PricingUnit,
    'Microsoft' AS ProviderName,
    CASE WHEN lower(publishertype) = 'marketplace'
        THEN coalesce(nullif(publishername, ''), 'Azure Marketplace') ELSE 'Microsoft'
    END AS PublisherName,
    nullif(lower(replace(resourcelocation, ' ', '')), '') AS RegionId,
    nullif(resourcelocation, '') AS RegionName,
    nullif(resourceid, '') AS ResourceId,
    coalesce(nullif(resourcename, ''), nullif(regexp_extract(resourceid, '([^/]+)/?$', 1), '')) AS ResourceName,
    nullif(regexp_extract(resourceid, '/providers/([^/]+/[^/]+)', 1), '') AS ResourceType,
    coalesce(category, 'Other') AS ServiceCategory,
    coalesce(nullif(metercategory, ''), nullif(consumedservice, ''), nullif(productname, ''), 'Azure')
        AS ServiceName,
    nullif(meterid, '') AS SkuId,
    nullif(metername, '') AS SkuMeter,
    -- Exports carry no price id: the meter and its pricing model name the price.
    CASE WHEN priced AND nullif(meterid, '') IS NOT NULL
        THEN meterid || ':' || coalesce(nullif(pricingmodel, ''), 'OnDemand') END AS SkuPriceId,
    nullif(subscriptionid, '') AS SubAccountId,
    nullif(subscriptionname, '') AS SubAccountName,
    tags AS Tags,
    nullif(chargetype, '') AS x_ChargeType,
    nullif(pricingmodel, '') AS x_PricingModel,
    nullif(resourcegroupname, '') AS x_ResourceGroupName,
    nullif(metersubcategory, '') AS x_MeterSubcategory,
    nullif(consumedservice, '') AS x_ConsumedService,
    nullif(invoicesectionname, '') AS x_InvoiceSectionName,
    nullif(costcenter, '') AS x_CostCenter
FROM priced
LEFT JOIN service_categories ON service_categories.meter_category = priced.metercategory
