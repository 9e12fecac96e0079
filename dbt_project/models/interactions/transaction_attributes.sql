{# One row per cdp_id with orders: the purchase facts marketers segment on. #}
with orders as (
    select * from {{ ref('unified_transactions') }}
    where cdp_id is not null and not is_cancelled
)

{{ order_attributes('orders') }}
