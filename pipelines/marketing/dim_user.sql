-- dim_user: Salesforce users with an e-mail address and an account, left-joined with the
-- Marketo leads of the same e-mail address (case-insensitive). A user whose address has
-- two leads (a duplicate not merged yet) has two rows: test_dim_user_unique_user_id counts
-- them.
SELECT
    u.id AS user_id,
    u.name AS user_name,
    u.email,
    u.account_id,
    u.title,
    u.is_active,
    l.id AS lead_id,
    l.lead_source,
    l.country AS lead_country
FROM salesforce_user u
LEFT JOIN marketo_lead l ON lower(u.email) = lower(l.email)
WHERE u.email IS NOT NULL AND u.account_id IS NOT NULL
