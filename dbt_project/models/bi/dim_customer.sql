{# One row per person: the customer 360 with their purchase attributes (null for non-buyers). #}
select
    c.cdp_id as customer_key,
    c.*,
    a.* exclude (cdp_id),
    e.* exclude (cdp_id),
    a.cdp_id is not null as is_buyer
from {{ ref('customer_360') }} c
left join {{ ref('transaction_attributes') }} a on a.cdp_id = c.cdp_id
left join {{ ref('transaction_attributes_extended') }} e on e.cdp_id = c.cdp_id
