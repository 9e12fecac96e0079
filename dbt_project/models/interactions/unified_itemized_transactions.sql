{#
  One row per order line from every transaction_items source, with its order's person, date,
  channel and store and its product's category. A line whose order is unknown (e.g. the order
  was quarantined) is kept with a null order_key, so its revenue is never silently lost.
#}
{%- set text = dbt.type_string() %}{# varchar / string: the engine's text type #}
{%- set items = var('item_sources') -%}

{%- if items | length == 0 %}
select
    null::{{ text }} as item_key, null::{{ text }} as order_key, null::{{ text }} as source,
    null::{{ text }} as order_id, null::bigint as line_number, null::{{ text }} as cdp_id,
    null::timestamp as order_datetime, null::date as order_date, null::{{ text }} as channel,
    null::{{ text }} as store_id, null::{{ text }} as product_id, null::{{ text }} as product_name,
    null::{{ text }} as product_category, null::{{ text }} as product_brand, null::double as item_quantity,
    null::double as item_unit_price, null::double as item_revenue, null::boolean as is_cancelled,
    null::boolean as is_return, null::double as net_item_revenue
where false
{%- else %}
with lines as (
    {%- for s in items %}
    select source, {{ "'" ~ s.order_source ~ "'" if s.order_source else "null" }}::{{ text }} as order_source,
           order_id, line_number, product_id, item_quantity, item_unit_price, item_revenue,
           product_category
    from {{ source('domain', s.name) }}
    {%- if not loop.last %} union all {%- endif %}
    {%- endfor %}
),

orders as (
    select * from {{ ref('unified_transactions') }}
)

select
    l.source || ':' || l.order_id || ':' || l.line_number as item_key,
    o.order_key,
    l.source,
    l.order_id,
    l.line_number,
    o.cdp_id,
    o.order_datetime,
    o.order_date,
    o.channel,
    o.store_id,
    l.product_id,
    p.product_name,
    coalesce(l.product_category, p.product_category, 'Unknown') as product_category,
    p.product_brand,
    l.item_quantity,
    l.item_unit_price,
    l.item_revenue,
    coalesce(o.is_cancelled, false) as is_cancelled,
    coalesce(o.is_fully_returned, false) as is_return,
    {#- a fully returned or cancelled order's lines carry no revenue; a partial return is an
        order-level amount, spread over its lines in proportion to their revenue #}
    {{ cdp_round("case when o.is_cancelled or o.is_fully_returned then 0
               when o.returned_revenue > 0 and o.order_revenue > 0
                   then l.item_revenue * (1 - o.returned_revenue / o.order_revenue)
               else l.item_revenue end", 2) }} as net_item_revenue
from lines l
left join orders o
    on o.order_id = l.order_id and (l.order_source is null or l.order_source = o.source)
left join {{ ref('unified_product_catalog') }} p
    on p.product_id = l.product_id
{%- endif %}
