{#
  One row per person in transaction_attributes: product, channel and store preferences and
  the lifecycle flags (one-and-done, early repeat purchaser, multi-channel buyer).
  Preferences are by net revenue (categories) or order count (channel, store); ties go to the
  alphabetically first value so a rebuild gives the same answer. A tenant without order lines
  (no transaction_items sources) has no category columns: the rest comes from orders alone.
#}
{{ cdp_interactions_incremental() }}
{%- set as_of = "date '" ~ var('as_of_date') ~ "'" -%}
{%- set lines = cdp_has('order_lines') -%}

with attributes as (
    select * from {{ ref('transaction_attributes') }}
    {{- cdp_only_touched('touched_people') }}
),

orders as (
    select *,
           row_number() over (partition by cdp_id order by order_datetime, order_key) as nth,
           row_number() over (partition by cdp_id order by order_datetime desc, order_key desc) as nth_last
    from {{ ref('unified_transactions') }}
    where cdp_id is not null and not is_cancelled and order_date <= {{ as_of }}
    {{- cdp_only_touched('touched_people', keyword='and') }}
),
{%- if lines %}

lines as (
    select i.*, o.nth, o.nth_last
    from {{ ref('unified_itemized_transactions') }} i
    join orders o using (order_key)
),

first_category as (
    select cdp_id, product_category as first_product_category
    from lines where nth = 1
    qualify row_number() over (partition by cdp_id order by item_revenue desc, line_number) = 1
),

last_category as (
    select cdp_id, product_category as last_product_category
    from lines where nth_last = 1
    qualify row_number() over (partition by cdp_id order by item_revenue desc, line_number) = 1
),

category_revenue as (
    select cdp_id, product_category, sum(net_item_revenue) as revenue
    from lines group by all
),

preferred_category as (
    select cdp_id, product_category as preferred_category
    from category_revenue
    qualify row_number() over (partition by cdp_id order by revenue desc, product_category) = 1
),

category_counts as (
    select cdp_id, count(distinct product_category) as category_count,
           sum(item_quantity) filter (where not is_return) as units_purchased
    from lines group by cdp_id
),
{%- endif %}

preferred_channel as (
    select cdp_id, channel as preferred_channel
    from (select cdp_id, channel, count(*) as n from orders group by all)
    qualify row_number() over (partition by cdp_id order by n desc, channel) = 1
),

preferred_store as (
    select cdp_id, store_id as preferred_store
    from (select cdp_id, store_id, count(*) as n from orders where store_id is not null group by all)
    qualify row_number() over (partition by cdp_id order by n desc, store_id) = 1
),

second_order as (  -- the second order kept (a returned order is not a repeat purchase)
    select cdp_id, order_date as second_order_date
    from orders where not is_fully_returned
    qualify row_number() over (partition by cdp_id order by order_datetime, order_key) = 2
),

per_person as (
    select cdp_id,
           count(distinct channel) as channel_count,
           count(distinct store_id) as store_count
    from orders group by cdp_id
)

select
    a.cdp_id,
    {%- if lines %}
    fc.first_product_category,
    lc.last_product_category,
    pc.preferred_category,
    coalesce(cc.category_count, 0) as category_count,
    coalesce(cc.units_purchased, 0) as units_purchased,
    {%- endif %}
    ch.preferred_channel,
    st.preferred_store,
    so.second_order_date,
    a.order_count = 1 as is_one_and_done,
    coalesce({{ dbt.datediff('a.first_order_date', 'so.second_order_date', 'day') }} <= {{ var('early_repeat_days') }}, false)
        as is_early_repeat_purchaser,
    p.channel_count,
    p.channel_count >= 2 as is_multichannel_buyer,
    p.store_count
from attributes a
{%- if lines %}
left join first_category fc using (cdp_id)
left join last_category lc using (cdp_id)
left join preferred_category pc using (cdp_id)
left join category_counts cc using (cdp_id)
{%- endif %}
left join preferred_channel ch using (cdp_id)
left join preferred_store st using (cdp_id)
left join second_order so using (cdp_id)
left join per_person p using (cdp_id)
