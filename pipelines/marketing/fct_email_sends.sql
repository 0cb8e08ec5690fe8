-- fct_email_sends: one row per e-mail sent to a lead that exists (the sends of a deleted,
-- merged-away lead, or of a lead not seen yet, are left out).
SELECT
    s.id AS activity_id,
    s.email_send_id,
    s.lead_id,
    s.campaign_id,
    s.campaign_run_id,
    s.email_template_id,
    s.primary_attribute_value AS email_name,
    s.activity_date AS sent_at
FROM marketo_activity_send_email s
JOIN marketo_lead l ON s.lead_id = l.id
