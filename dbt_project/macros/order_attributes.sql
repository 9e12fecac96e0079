{# Purchase facts per person from purchases (cdp_id, order_date, is_fully_returned, net_revenue;
   cancelled orders and orders after the as-of date already removed), for the customer 360 of
   databases whose people differ from Stitch's. The same definitions as
   interactions.transaction_attributes: an order counts when it was not returned in full;
   revenue is net of returns. #}
{% macro order_attributes(purchases) -%}
select
    cdp_id,
    min(order_date) as first_order_date,
    max(order_date) as last_order_date,
    count(*) filter (where not is_fully_returned) as order_count,
    {{ cdp_round("sum(net_revenue)", 2) }} as lifetime_revenue,
    {{ cdp_round("sum(net_revenue) / nullif(count(*) filter (where not is_fully_returned), 0)", 2) }} as average_order_value
from {{ purchases }}
group by cdp_id
{%- endmacro %}
