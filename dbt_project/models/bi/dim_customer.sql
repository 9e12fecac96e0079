{#
  One row per person: the customer 360, the purchase attributes it does not carry yet, and the
  predicted CLV (null for people who never bought).
#}
{%- set in_c360 = adapter.get_columns_in_relation(ref('c360__customer_360')) | map(attribute='name') | map('lower') | list -%}
{%- set attributes = ['first_order_date', 'last_order_date', 'first_order_revenue', 'first_order_channel',
    'last_order_revenue', 'last_order_channel', 'order_count', 'return_count', 'lifetime_revenue',
    'returned_revenue', 'average_order_value', 'orders_12m', 'revenue_12m', 'days_since_last_order'] -%}
select
    c.cdp_id as customer_key,
    c.*,
    {%- for col in attributes if col not in in_c360 %}
    a.{{ col }},
    {%- endfor %}
    {{ cdp_star_except('e', ['cdp_id']) }},
    p.predicted_orders_12m,
    p.predicted_revenue_12m,
    p.probability_alive,
    p.clv_tier,
    a.cdp_id is not null as is_buyer
from {{ ref('c360__customer_360') }} c
left join {{ ref('transaction_attributes') }} a on a.cdp_id = c.cdp_id
left join {{ ref('transaction_attributes_extended') }} e on e.cdp_id = c.cdp_id
left join {{ source('predictive', 'predicted_clv_attributes') }} p on p.cdp_id = c.cdp_id
