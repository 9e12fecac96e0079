{# One row per order line; order, customer and date keys are null for a line of an unknown order. #}
select
    item_key,
    order_key,
    cdp_id as customer_key,
    {{ cdp_date_key('order_date') }} as date_key,
    product_id as product_key,
    line_number,
    channel,
    store_id,
    is_cancelled,
    is_return,
    item_quantity,
    item_unit_price,
    item_revenue,
    net_item_revenue
from {{ ref('unified_itemized_transactions') }}
