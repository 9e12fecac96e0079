-- Buyers, orders and net revenue per month and channel (kept orders only)
SELECT
    date_trunc('month', order_date) AS order_month,
    channel,
    approx_distinct(cdp_id) AS buyers,
    count(*) AS orders,
    round(sum(net_revenue), 2) AS net_revenue
FROM interactions.unified_transactions
WHERE NOT is_cancelled AND NOT is_fully_returned
GROUP BY 1, 2
ORDER BY 1, 2
