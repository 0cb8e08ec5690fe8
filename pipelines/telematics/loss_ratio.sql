-- loss_ratio: per region and coverage (of the policies as they are now), (claims paid +
-- adjustment expenses) / earned premium. Premiums are summed per policy and losses per
-- claim, each side on its own, then joined: a policy's premium is counted once however many
-- claims it has. Groups without claims have 0 losses; claims of a policy that no longer
-- exists are not counted. loss_ratio is NULL while the earned premium is 0.
WITH premiums AS (
    SELECT
        region,
        coverage,
        COUNT(*) AS policies,
        SUM(earned_premium_cents) AS earned_premium_cents
    FROM policies
    GROUP BY region, coverage
),
losses AS (
    SELECT
        p.region,
        p.coverage,
        COUNT(*) AS claims,
        SUM(c.paid_cents) AS paid_cents,
        SUM(c.adjustment_expense_cents) AS adjustment_expense_cents
    FROM claims c
    JOIN policies p ON c.policy_id = p.policy_id
    GROUP BY p.region, p.coverage
)
SELECT
    pr.region,
    pr.coverage,
    pr.policies,
    COALESCE(l.claims, 0) AS claims,
    pr.earned_premium_cents,
    COALESCE(l.paid_cents, 0) AS paid_cents,
    COALESCE(l.adjustment_expense_cents, 0) AS adjustment_expense_cents,
    CAST(COALESCE(l.paid_cents, 0) + COALESCE(l.adjustment_expense_cents, 0) AS DOUBLE)
        / pr.earned_premium_cents AS loss_ratio
FROM premiums pr
LEFT JOIN losses l ON pr.region = l.region AND pr.coverage = l.coverage
