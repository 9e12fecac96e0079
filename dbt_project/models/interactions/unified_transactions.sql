{#
  One row per order from every configured transactions source, with the cdp_id of the customer
  record it belongs to (null when the customer pk is unknown to Stitch).
  Cancelled orders are kept and flagged (net revenue 0, never counted); returns subtract the
  returned amount (the order-return-amount column, or the whole order when its status says
  returned/refunded) from the order's net revenue.
#}
{%- set text = dbt.type_string() %}{# varchar / string: the engine's text type #}
{%- set sources = var('transaction_sources') -%}
{%- set items = var('item_sources') -%}

{%- if sources | length == 0 %}
select
    null::{{ text }} as order_key, null::{{ text }} as source, null::{{ text }} as order_id,
    null::{{ text }} as cdp_id, null::{{ text }} as customer_source, null::{{ text }} as customer_pk,
    null::timestamp as order_datetime, null::date as order_date, null::{{ text }} as channel,
    null::{{ text }} as store_id, null::{{ text }} as order_status, null::boolean as is_cancelled,
    null::boolean as is_return, null::boolean as is_fully_returned,
    null::double as order_revenue, null::double as order_discount, null::double as returned_revenue,
    null::double as net_revenue, null::bigint as item_count, null::double as item_units
where false
{%- else %}
with orders as (
    {%- for s in sources %}
    select source, order_id, customer_source, customer_pk, order_datetime, order_revenue,
           order_discount, order_status, channel, store_id, return_amount
    from {{ source('domain', s.name) }}
    {%- if not loop.last %} union all {%- endif %}
    {%- endfor %}
),

{%- if items | length > 0 %}
lines as (
    {%- for s in items %}
    select {{ "'" ~ s.order_source ~ "'" if s.order_source else "null" }}::{{ text }} as order_source,
           order_id, item_quantity
    from {{ source('domain', s.name) }}
    {%- if not loop.last %} union all {%- endif %}
    {%- endfor %}
),
line_counts as (
    select o.source, o.order_id, count(*) as item_count, sum(l.item_quantity) as item_units
    from lines l
    join orders o on o.order_id = l.order_id and (l.order_source is null or l.order_source = o.source)
    group by all
),
{%- else %}
line_counts as (
    select null::{{ text }} as source, null::{{ text }} as order_id, null::bigint as item_count,
           null::double as item_units
    where false
),
{%- endif %}

flagged as (
    select
        *,
        order_status in ('cancelled', 'canceled', 'void', 'voided') as is_cancelled,
        order_status in ('returned', 'refunded') as returned_status
    from orders
),

amounts as (
    select
        *,
        case when is_cancelled then 0
             when return_amount is not null then least(greatest(return_amount, 0), order_revenue)
             when returned_status then order_revenue
             else 0 end as returned_revenue
    from flagged
)

select
    a.source || ':' || a.order_id as order_key,
    a.source,
    a.order_id,
    c.cdp_id,
    a.customer_source,
    a.customer_pk,
    a.order_datetime,
    cast(a.order_datetime as date) as order_date,
    a.channel,
    a.store_id,
    a.order_status,
    a.is_cancelled,
    not a.is_cancelled and a.returned_revenue > 0 as is_return,
    not a.is_cancelled and a.returned_revenue > 0 and a.returned_revenue >= a.order_revenue as is_fully_returned,
    a.order_revenue,
    a.order_discount,
    {{ cdp_round("a.returned_revenue", 2) }} as returned_revenue,
    {{ cdp_round("case when a.is_cancelled then 0 else a.order_revenue - a.returned_revenue end", 2) }} as net_revenue,
    coalesce(lc.item_count, 0) as item_count,
    coalesce(lc.item_units, 0) as item_units
from amounts a
left join {{ source('stitch', 'unified_coalesced') }} c
    on c.source = a.customer_source and c.pk = a.customer_pk
left join line_counts lc
    on lc.source = a.source and lc.order_id = a.order_id
{%- endif %}
