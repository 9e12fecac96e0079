{# One row per cdp_id with orders: the purchase facts marketers segment on. #}
with orders as (
    select * from {{ ref('unified_transactions') }}
    where cdp_id is not null and not is_cancelled
)

select
    cdp_id,
    min(order_date) as first_order_date,
    max(order_date) as last_order_date,
    count(*) filter (where not is_return) as order_count,
    round(sum(net_revenue), 2) as lifetime_revenue,
    round(sum(net_revenue) / nullif(count(*) filter (where not is_return), 0), 2) as average_order_value
from orders
group by cdp_id
