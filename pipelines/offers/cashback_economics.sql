-- cashback_economics: per customer segment and calendar month (UTC) of the transactions of
-- live customers: spend, cash back paid, the interchange the bank earns on that spend, the
-- net result and the loss, and the break-even threshold.
--
-- The interchange rate (1.5 % of spend) lives here, nowhere else:
--   interchange_earned_cents  spend_cents * 0.015
--   net_cents                 interchange earned - cash back paid (negative: a loss)
--   loss_cents                cash back paid beyond the interchange (0 when it pays off)
--   cashback_rate             cash back paid / spend
--   break_even_rate           the cash-back rate at which the program breaks even (0.015)
--   break_even_spend_cents    the spend whose interchange would pay the cash back paid
WITH monthly AS (
    SELECT
        c.segment,
        DATE_TRUNC('month', t.txn_time) AS month,
        COUNT(*) AS transactions,
        COUNT(DISTINCT t.customer_id) AS customers,
        SUM(t.amount_cents) AS spend_cents,
        SUM(t.cashback_cents) AS cashback_paid_cents
    FROM transactions t
    JOIN customer_profiles c ON t.customer_id = c.customer_id
    GROUP BY c.segment, DATE_TRUNC('month', t.txn_time)
)
SELECT
    segment,
    month,
    transactions,
    customers,
    spend_cents,
    cashback_paid_cents,
    spend_cents * 1.5e-2 AS interchange_earned_cents,
    spend_cents * 1.5e-2 - cashback_paid_cents AS net_cents,
    CASE WHEN cashback_paid_cents > spend_cents * 1.5e-2
        THEN cashback_paid_cents - spend_cents * 1.5e-2 ELSE 0.0 END AS loss_cents,
    CAST(cashback_paid_cents AS DOUBLE) / spend_cents AS cashback_rate,
    1.5e-2 AS break_even_rate,
    cashback_paid_cents / 1.5e-2 AS break_even_spend_cents
FROM monthly
