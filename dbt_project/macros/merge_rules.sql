{#
  Flexible merge rules. Each profile field of a customer 360 database has a rule (the tenant
  config's databases.<db>.merge, or the top-level merge for c360): {rule, sources, fallback}.
  A rule is an ORDER BY over the source records of one cdp_id; the merged value is the value of
  the first record in that order that has one, and `<field>__from` names that record.

    source_priority : records of the listed sources first, in list order, then the fallback rule
    most_recent     : latest update timestamp (then latest create timestamp)
    first_seen      : earliest create timestamp (the update timestamp when there is none)
    most_frequent   : the value carried by the most records; ties: the value of the most
                      recent record
    longest         : the longest value; ties: most recent
    max / min       : the largest / smallest value (dates: latest / earliest); ties: most recent
    all_values      : every distinct value with the sources and records carrying it
                      (`<field>__all`), plus a primary value chosen by the fallback rule

  Every order ends on (source, pk), so the choice is deterministic.

  When no rule is passed, the rule comes from var('merge_rules') (the c360 database's rules).
#}

{% macro merge_rule_for(field) -%}
    {%- set rules = var('merge_rules') -%}
    {{- return(rules.get(field, {'rule': 'most_recent', 'sources': [], 'fallback': 'most_recent'})) -}}
{%- endmacro %}

{# The rule that ranks records for a field: source_priority and all_values rank the rest by
   their fallback. #}
{% macro ranking_rule(rule) -%}
    {%- if rule.rule in ('source_priority', 'all_values') -%}
        {{- return(rule.get('fallback', 'most_recent')) -}}
    {%- else -%}
        {{- return(rule.rule) -}}
    {%- endif -%}
{%- endmacro %}

{# Does this rule need the per-value record count (`<key>__freq`) in the records? #}
{% macro needs_frequency(rule) -%}
    {{- return(ranking_rule(rule) == 'most_frequent') -}}
{%- endmacro %}

{% macro most_recent_order() -%}
    updated_at desc nulls last, created_at desc nulls last
{%- endmacro %}

{#
  ORDER BY for one field (or a group: `value_sql` is then the group's leading field and
  `freq_key` the group's name).
#}
{% macro merge_order(rule=none, field=none, value_sql=none, freq_key=none) -%}
    {%- set rule = rule if rule is not none else merge_rule_for(field) -%}
    {%- set value_sql = value_sql or field -%}
    {%- set freq_key = freq_key or field -%}
    {%- set ranking = ranking_rule(rule) -%}
    {%- if rule.rule == 'source_priority' -%}
    case source
        {%- for s in rule.sources %} when '{{ s }}' then {{ loop.index }}{% endfor %}
        else {{ (rule.sources | length) + 1 }} end,
    {%- endif %}
    {%- if ranking == 'most_recent' %}
    {{ most_recent_order() }},
    {%- elif ranking == 'first_seen' %}
    coalesce(created_at, updated_at) asc nulls last, updated_at asc nulls last,
    {%- elif ranking == 'most_frequent' %}
    {{ freq_key }}__freq desc, {{ most_recent_order() }},
    {%- elif ranking == 'longest' %}
    length(cast({{ value_sql }} as {{ dbt.type_string() }})) desc nulls last, {{ most_recent_order() }},
    {%- elif ranking == 'max' %}
    {{ value_sql }} desc nulls last, {{ most_recent_order() }},
    {%- elif ranking == 'min' %}
    {{ value_sql }} asc nulls last, {{ most_recent_order() }},
    {%- else %}
    {{ exceptions.raise_compiler_error("unknown merge rule '" ~ ranking ~ "' for " ~ (field or freq_key)) }}
    {%- endif %}
    source, pk
{%- endmacro %}

{# How many records of the person carry this field's value (for most_frequent). #}
{% macro frequency_column(fields, key) -%}
    count(*) over (partition by cdp_id, {{ fields | join(', ') }}) as {{ key }}__freq
{%- endmacro %}

{# The merged value of one field and its record, struct {val, from_record}, as a pick (see
   cdp_pick in cross_engine.sql): the first record in rule order that has a value. #}
{% macro merge_field_pick(field, rule=none) -%}
    {{- return({'name': field ~ '__merged',
                'value': cdp_struct([('val', field), ('from_record', "source || '|' || pk")]),
                'order': merge_order(rule, field),
                'filter': field ~ ' is not null'}) -}}
{%- endmacro %}

{# The merged value of one field: first non-null value in rule order. #}
{% macro merge_field(field, rule=none) -%}
    first({{ field }} order by {{ merge_order(rule, field) }}) filter (where {{ field }} is not null)
{%- endmacro %}

{# The source record a merged field came from ("source|pk"), for provenance. #}
{% macro merge_field_source(field, rule=none) -%}
    first(source || '|' || pk order by {{ merge_order(rule, field) }}) filter (where {{ field }} is not null)
{%- endmacro %}

{#
  Fields that belong together are taken from one record, never mixed: the address group
  (street, city, state, postal, country) comes from the best record that has a street line,
  or, failing that, from the best record with a city, state or postal code, or else from the
  best record with a country (every record has one: its own, its source's or the tenant's).
  "Best" is the group's rule applied to whole records: most_frequent counts records carrying
  the same full address, longest compares street lines.
#}
{% macro merge_group_pick(group_name, fields, rule=none) -%}
    {%- set rule = rule if rule is not none else merge_rule_for(fields[0]) -%}
    {%- set parts = [] -%}
    {%- for f in fields %}{% do parts.append((f, f)) %}{% endfor -%}
    {%- do parts.append(('record_key', "source || '|' || pk")) -%}
    {%- set filters = [] -%}
    {%- for f in fields %}{% do filters.append(f ~ ' is not null') %}{% endfor -%}
    {%- set locality = [] -%}
    {%- for f in fields[1:] if f != 'country' %}{% do locality.append(f ~ ' is null') %}{% endfor -%}
    {%- set locality_order = '(' ~ (locality | join(' and ')) ~ '), ' if locality else '' -%}
    {{- return({'name': group_name ~ '__record',
                'value': cdp_struct(parts),
                'order': '(' ~ fields[0] ~ ' is null), ' ~ locality_order
                         ~ merge_order(rule, fields[0], fields[0], group_name),
                'filter': '(' ~ (filters | join(' or ')) ~ ')'}) -}}
{%- endmacro %}

{# all_values: every distinct value of a field per person, with the sources and records that
   carry it, ordered by value. One row per cdp_id: cdp_id, <field>__all. (list_sort rather than
   ordered aggregates: same order, a third of the time at 1M records.) #}
{% macro all_values(field, records) -%}
    select cdp_id,
           {{ cdp_sorted_list(cdp_struct([('value', field), ('sources', 'sources'),
                                          ('records', 'record_keys')])) }} as {{ field }}__all
    from (
        select cdp_id, {{ field }},
               {{ cdp_sorted_distinct_list('source') }} as sources,
               {{ cdp_sorted_list("source || '|' || pk") }} as record_keys
        from {{ records }}
        where {{ field }} is not null
        group by cdp_id, {{ field }}
    )
    group by cdp_id
{%- endmacro %}
