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
    {{ cdp_money_average("net_revenue", "count(*) filter (where not is_fully_returned)") }} as average_order_value
from {{ purchases }}
group by cdp_id
{%- endmacro %}


{#
  Aggregate: the average of a money column whose values are whole cents (net_revenue is rounded
  to the cent) over `count` orders, rounded to the cent as cdp_round rounds; null when count is 0.
  The sum is taken in whole cents, an exact integer sum, then as the double nearest to it: a sum of
  doubles depends on the order the engine adds the rows in (33.23 + 16.17 + 14.8 + 33.54 is 97.74
  one way and 97.74000000000001 another), and an average near a half cent (24.435) then rounds up
  on one engine and down on the other - or on one DuckDB run and the next, threads adding in
  another order.
#}
{% macro cdp_money_average(expr, count) -%}
    {{ cdp_round("(cast(sum(cast(round(" ~ expr ~ " * 100) as bigint)) as double) / 100) / nullif("
                 ~ count ~ ", 0)", 2) }}
{%- endmacro %}
