{#
  Flexible merge rules. Each profile field has a rule in the tenant config (merge.fields), passed
  in as var('merge_rules'): {field: {rule, sources, fallback}}. A rule is an ORDER BY over the
  source records of one cdp_id; the merged value is the first non-null value in that order.

    source_priority : records of the listed sources first, in list order, then the fallback
    most_recent     : the record with the latest update timestamp first

  Ties always end on (source, pk) so the choice is deterministic.
#}

{% macro merge_order(rule) -%}
    {%- if rule.rule == 'source_priority' -%}
    case source
        {%- for s in rule.sources %} when '{{ s }}' then {{ loop.index }}{% endfor %}
        else {{ (rule.sources | length) + 1 }} end,
    {%- endif %}
    {#- fallback and most_recent both order by recency #}
    updated_at desc nulls last, created_at desc nulls last, source, pk
{%- endmacro %}

{% macro merge_rule_for(field) -%}
    {%- set rules = var('merge_rules') -%}
    {{- return(rules.get(field, {'rule': 'most_recent', 'sources': [], 'fallback': 'most_recent'})) -}}
{%- endmacro %}

{# The merged value of one field: first non-null value in rule order. #}
{% macro merge_field(field) -%}
    first({{ field }} order by {{ merge_order(merge_rule_for(field)) }}) filter (where {{ field }} is not null)
{%- endmacro %}

{# The source record a merged field came from ("source|pk"), for provenance. #}
{% macro merge_field_source(field) -%}
    first(source || '|' || pk order by {{ merge_order(merge_rule_for(field)) }}) filter (where {{ field }} is not null)
{%- endmacro %}

{#
  Fields that belong together are taken from one record, never mixed: the address group
  (street, city, state, postal, country) comes from the best record that has a street line,
  or, failing that, from the best record with any part of an address.
#}
{% macro merge_group(group_name, fields) -%}
    first(struct_pack(
        {%- for f in fields %}{{ f }} := {{ f }}, {% endfor %}record_key := source || '|' || pk)
        order by ({{ fields[0] }} is null), {{ merge_order(merge_rule_for(fields[0])) }})
        filter (where {% for f in fields %}{{ f }} is not null{% if not loop.last %} or {% endif %}{% endfor %})
{%- endmacro %}
