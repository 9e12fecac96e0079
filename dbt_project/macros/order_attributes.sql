{# Purchase facts per person from orders (cdp_id, order_date, is_return, net_revenue; cancelled
   orders already removed): shared by interactions.transaction_attributes and the customer 360
   of databases whose people differ from Stitch's. #}
{% macro order_attributes(orders) -%}
select
    cdp_id,
    min(order_date) as first_order_date,
    max(order_date) as last_order_date,
    count(*) filter (where not is_return) as order_count,
    round(sum(net_revenue), 2) as lifetime_revenue,
    round(sum(net_revenue) / nullif(count(*) filter (where not is_return), 0), 2) as average_order_value
from {{ orders }}
group by cdp_id
{%- endmacro %}
