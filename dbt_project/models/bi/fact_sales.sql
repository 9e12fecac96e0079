{# One row per order; customer_key is null for orders of a customer unknown to Stitch. #}
select
    order_key,
    cdp_id as customer_key,
    {{ cdp_date_key('order_date') }} as date_key,
    order_datetime,
    source,
    order_id,
    channel,
    store_id,
    order_status,
    is_cancelled,
    is_return,
    is_fully_returned,
    order_revenue,
    order_discount,
    returned_revenue,
    net_revenue,
    item_count,
    item_units
from {{ ref('unified_transactions') }}
