{# The customer 360: merged profile + transaction attributes, one row per cdp_id. #}
select
    m.cdp_id,
    m.given_name,
    m.surname,
    m.full_name,
    m.email,
    m.phone,
    m.address,
    m.city,
    m.state,
    m.postal,
    m.country,
    m.birthdate,
    m.gender,
    m.loyalty_id,
    m.record_count,
    m.sources,
    m.first_seen_at,
    t.first_order_date,
    t.last_order_date,
    coalesce(t.order_count, 0) as order_count,
    coalesce(t.lifetime_revenue, 0) as lifetime_revenue,
    t.average_order_value
from {{ ref('merged_customers') }} m
left join {{ ref('transaction_attributes') }} t using (cdp_id)
