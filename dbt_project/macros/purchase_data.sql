{#
  What purchase data the tenant has (cdp/config/scope.py decides, from its source kinds, and
  passes it as the var purchase_data): `orders` (a transactions source) and `order_lines`
  (transactions and transaction_items sources). Models that read purchases use
  {% if cdp_has('orders') %} ... {% endif %}; cdp leaves out of the graph the models that need
  what the tenant does not have (a custom model says so with meta: {cdp_needs: [orders]}).
#}
{% macro cdp_has(need) -%}
    {%- set data = var('purchase_data') -%}
    {%- if need not in data -%}
        {{ exceptions.raise_compiler_error("cdp_has: '" ~ need ~ "' is not purchase data cdp knows; expected one of: " ~ (data.keys() | join(', '))) }}
    {%- endif -%}
    {{- return(data[need]) -}}
{%- endmacro %}
