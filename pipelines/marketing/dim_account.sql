-- dim_account: one row per live Salesforce account (soft-deleted accounts are removed by
-- the table's apply_as_deletes), with its billing country.
SELECT
    id AS account_id,
    name AS account_name,
    industry,
    billing_country,
    billing_city,
    number_of_employees,
    annual_revenue,
    owner_id,
    created_date,
    last_modified_date
FROM salesforce_account
