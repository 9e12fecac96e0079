{#
  One row per product: every product source (the first source in config order wins when two
  list the same product id), plus products that were sold but are in no catalogue, so no order
  line points at a missing product.
#}
{%- set text = dbt.type_string() %}{# varchar / string: the engine's text type #}
{%- set products = var('product_sources') -%}
{%- set items = var('item_sources') -%}

with catalog as (
    {%- for s in products %}
    select product_id, product_name, product_category, product_brand, product_price,
           source, {{ loop.index }} as source_rank
    from {{ source('domain', s.name) }}
    union all
    {%- endfor %}
    {#- typed and named: the only part of the union when there is no product source #}
    select null::{{ text }} as product_id, null::{{ text }} as product_name,
           null::{{ text }} as product_category, null::{{ text }} as product_brand,
           null::double as product_price, null::{{ text }} as source, null::integer as source_rank
    where false
),

sold as (
    {%- for s in items %}
    select product_id, product_category, item_unit_price
    from {{ source('domain', s.name) }}
    union all
    {%- endfor %}
    select null::{{ text }} as product_id, null::{{ text }} as product_category,
           null::double as item_unit_price
    where false
),

first_listing as (
    select * from catalog
    qualify row_number() over (partition by product_id order by source_rank) = 1
),

sold_only as (
    select
        product_id,
        null::{{ text }} as product_name,
        mode(product_category) as product_category,
        null::{{ text }} as product_brand,
        median(item_unit_price) as product_price,
        null::{{ text }} as source,
        false as in_catalog
    from sold
    where product_id not in (select product_id from first_listing)
    group by product_id
)

select
    product_id,
    coalesce(product_name, product_id) as product_name,
    coalesce(product_category, 'Unknown') as product_category,
    product_brand,
    product_price,
    source,
    in_catalog
from (
    select product_id, product_name, product_category, product_brand, product_price, source,
           true as in_catalog
    from first_listing
    union all
    select * from sold_only
)
