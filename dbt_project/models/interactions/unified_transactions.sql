{#
  One row per order from every configured transactions source, with the cdp_id of the customer
  record it belongs to (null when the customer pk is unknown to Stitch).
#}
{%- set sources = var('transaction_sources') -%}

{%- if sources | length == 0 %}
select
    null::varchar as order_key, null::varchar as source, null::varchar as order_id,
    null::varchar as cdp_id, null::varchar as customer_source, null::varchar as customer_pk,
    null::timestamp as order_datetime, null::date as order_date, null::double as order_revenue,
    null::double as order_discount, null::double as net_revenue, null::varchar as order_status,
    null::boolean as is_cancelled, null::boolean as is_return, null::varchar as channel,
    null::varchar as store_id
where false
{%- else %}
with orders as (
    {%- for s in sources %}
    select * from {{ source('domain', s.name) }}
    {%- if not loop.last %} union all {%- endif %}
    {%- endfor %}
)

select
    o.source || ':' || o.order_id as order_key,
    o.source,
    o.order_id,
    c.cdp_id,
    o.customer_source,
    o.customer_pk,
    o.order_datetime,
    cast(o.order_datetime as date) as order_date,
    o.order_revenue,
    o.order_discount,
    case when o.order_status in ('cancelled', 'canceled', 'returned', 'refunded') then 0
         else o.order_revenue end as net_revenue,
    o.order_status,
    o.order_status in ('cancelled', 'canceled') as is_cancelled,
    o.order_status in ('returned', 'refunded') as is_return,
    o.channel,
    o.store_id
from orders o
left join {{ source('stitch', 'unified_coalesced') }} c
    on c.source = o.customer_source and c.pk = o.customer_pk
{%- endif %}
