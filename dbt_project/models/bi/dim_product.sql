{# One row per product of the unified catalogue. #}
select
    product_id as product_key,
    product_id,
    product_name,
    product_category,
    product_brand,
    product_price,
    in_catalog
from {{ ref('unified_product_catalog') }}
