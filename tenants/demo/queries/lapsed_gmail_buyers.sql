-- Gmail customers with two or more orders whose last order is over 180 days before the newest one
WITH last_orders AS (
    SELECT cdp_id,
           max(order_date) AS last_order,
           count(*) AS orders,
           array_agg(DISTINCT channel) AS channels
    FROM interactions.unified_transactions
    WHERE NOT is_cancelled
    GROUP BY cdp_id
),
newest AS (SELECT max(order_date) AS d FROM interactions.unified_transactions)
SELECT c.cdp_id, c.email, l.orders, l.last_order,
       date_diff('day', l.last_order, n.d) AS days_since_last_order,
       cardinality(l.channels) AS channel_count,
       rank() OVER (ORDER BY l.orders DESC, c.cdp_id) AS loyalty_rank
FROM c360.customer_360 c
JOIN last_orders l ON l.cdp_id = c.cdp_id
CROSS JOIN newest n
WHERE regexp_like(c.email, '@gmail\.com$')
  AND l.orders >= 2
  AND l.last_order < date_add('day', -180, n.d)
