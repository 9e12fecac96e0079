{#
  One row per cdp_id: each profile field merged from the person's source records with the rule
  configured for it (merge.fields in the tenant config). The address is merged as a group.
#}
{%- set address_group = var('address_group') -%}
{%- set single_fields = ['given_name', 'surname', 'email', 'phone', 'birthdate', 'gender', 'loyalty_id'] -%}

with records as (
    select * from {{ source('stitch', 'unified_coalesced') }}
),

merged as (
    select
        cdp_id,
        {%- for f in single_fields %}
        {{ merge_field(f) }} as {{ f }},
        {{ merge_field_source(f) }} as {{ f }}__from,
        {%- endfor %}
        {{ merge_group('address_group', address_group) }} as address_record,
        count(*) as record_count,
        count(distinct source) as source_count,
        list(distinct source order by source) as sources,
        min(created_at) as first_seen_at,
        max(updated_at) as last_updated_at
    from records
    group by cdp_id
)

select
    cdp_id,
    given_name,
    surname,
    nullif(concat_ws(' ', given_name, surname), '') as full_name,
    email,
    phone,
    {%- for f in address_group %}
    address_record.{{ f }} as {{ f }},
    {%- endfor %}
    birthdate,
    gender,
    loyalty_id,
    record_count,
    source_count,
    sources,
    first_seen_at,
    last_updated_at,
    {%- for f in single_fields %}
    {{ f }}__from,
    {%- endfor %}
    address_record.record_key as address__from
from merged
