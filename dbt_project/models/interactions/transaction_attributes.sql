{#
  One row per cdp_id with a purchase on or before the as-of date: the purchase facts marketers
  segment on. A purchase is an order that was not cancelled; an order counts when it was not
  returned in full. Revenue is net of returns.
#}
{{ cdp_interactions_incremental() }}
{%- set as_of = "date '" ~ var('as_of_date') ~ "'" -%}

with purchases as (
    select *,
           not is_fully_returned as is_counted,
           order_date > {{ as_of }} - interval 365 day as in_last_12m
    from {{ ref('unified_transactions') }}
    where cdp_id is not null and not is_cancelled and order_date <= {{ as_of }}
    {{- cdp_only_touched('touched_people', keyword='and') }}
),

ranked as (
    select *,
           row_number() over (partition by cdp_id order by order_datetime, order_key) as nth,
           row_number() over (partition by cdp_id order by order_datetime desc, order_key desc) as nth_last
    from purchases
)

select
    cdp_id,
    min(order_date) as first_order_date,
    max(order_date) as last_order_date,
    any_value(net_revenue) filter (where nth = 1) as first_order_revenue,
    any_value(channel) filter (where nth = 1) as first_order_channel,
    any_value(net_revenue) filter (where nth_last = 1) as last_order_revenue,
    any_value(channel) filter (where nth_last = 1) as last_order_channel,
    count(*) filter (where is_counted) as order_count,
    count(*) filter (where is_return) as return_count,
    {{ cdp_round("sum(net_revenue)", 2) }} as lifetime_revenue,
    {{ cdp_round("sum(returned_revenue)", 2) }} as returned_revenue,
    {{ cdp_money_average("net_revenue", "count(*) filter (where is_counted)") }} as average_order_value,
    count(*) filter (where is_counted and in_last_12m) as orders_12m,
    {{ cdp_round("coalesce(sum(net_revenue) filter (where in_last_12m), 0)", 2) }} as revenue_12m,
    {{ dbt.datediff('max(order_date)', as_of, 'day') }} as days_since_last_order,
    {{ as_of }} as as_of_date
from ranked
group by cdp_id
