-- incidents_by_severity: claims (as they are now; withdrawn claims are deleted) counted by
-- incident type and damage severity, with their total claimed amount.
SELECT
    incident_type,
    damage_severity,
    COUNT(*) AS claims,
    SUM(claim_amount_cents) AS claim_amount_cents
FROM claims
GROUP BY incident_type, damage_severity
