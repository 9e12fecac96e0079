{#
  Example custom table: a retail vertical attribute table. Each person of the customer 360 gets
  a lifecycle stage and a value tier marketers segment on. Recency is measured against the
  latest order in the warehouse (not today), so a rebuild of the same data gives the same stages.
#}
with people as (
    select cdp_id, order_count, lifetime_revenue, first_order_date, last_order_date
    from {{ ref('c360__customer_360') }}
),

latest as (
    select max(last_order_date) as as_of from people
)

select
    p.cdp_id,
    p.order_count,
    p.lifetime_revenue,
    {{ dbt.datediff('p.last_order_date', 'l.as_of', 'day') }} as days_since_last_order,
    case
        when p.order_count = 0 then 'prospect'
        when {{ dbt.datediff('p.last_order_date', 'l.as_of', 'day') }} > 365 then 'lapsed'
        when p.order_count = 1 then 'new'
        when {{ dbt.datediff('p.last_order_date', 'l.as_of', 'day') }} > 180 then 'at_risk'
        else 'active'
    end as lifecycle_stage,
    case when p.order_count = 0 then null
         else ntile(5) over (partition by p.order_count > 0 order by p.lifetime_revenue, p.cdp_id)
    end as value_quintile
from people p
cross join latest l
