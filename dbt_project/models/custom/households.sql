{#
  Example custom table: households. People of the customer 360 who share a street address and
  ZIP code form one household (the same address rule Stitch uses as evidence, without merging
  the people). One row per household with its members and their combined purchases (a tenant
  without orders - no transactions sources - has households without purchase columns).
#}
{%- set orders = cdp_has('orders') %}
with people as (
    select cdp_id, surname, address, city, state, postal{{ ", lifetime_revenue, order_count" if orders }}
    from {{ ref('c360__customer_360') }}
    where address is not null and postal is not null
)

select
    {{ cdp_uuid_from_text("lower(address) || '|' || postal") }} as household_id,
    address,
    postal,
    min(city) as city,
    min(state) as state,
    count(*) as member_count,
    {{ cdp_sorted_list('cdp_id') }} as members,
    {{ cdp_sorted_distinct_values('surname') }} as surnames
    {%- if orders %},
    sum(order_count) as order_count,
    {{ cdp_round("sum(lifetime_revenue)", 2) }} as lifetime_revenue
    {%- endif %}
from people
group by address, postal
