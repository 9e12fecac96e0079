{#
  Incremental per-person models: a run recomputes only the people it touched.

  Which people a run touched is derived from the data, not from upstream bookkeeping: each
  scope (a customer 360 database, or the interactions stage) keeps the rows it was last built
  from in a state table of its own - <db>.built_records (record_key, cdp_id, digest of the
  record row) or interactions.built_orders (order_key, cdp_id, digest of the order row and its
  lines) - rewritten after the scope's models. The scope's `touched_people` model compares that
  state with the rows now, in one pass (full outer join on the row key): a person is touched
  when one of their rows joined, left, changed content or changed cdp_id (the old and the new
  cdp_id are both touched).

  The models themselves are dbt incremental models, unique_key the person, strategy
  delete+insert, whose pre-hook first deletes every touched person (so a person with no rows
  left disappears) and whose SQL, under is_incremental(), computes the touched people only.

  A model rebuilds whole on `--full-refresh`, on its first run, when its scope's state is
  missing, and when the state was written by different model code or settings: the state
  carries a fingerprint (the dbt checksums of the scope's models - the generated files hold a
  database's merge rules - plus var('cdp_code_digest'), cdp's digest of the macro files, and
  the vars the scope reads); should_full_refresh() below compares it.

  Spark (dbt-spark, parquet tables: no MERGE, no DELETE) builds these models as plain tables,
  rebuilt whole each run (cdp_incremental_materialization).
#}


{# 'incremental' where the engine can delete rows of a table (DuckDB); 'table' on Spark. #}
{% macro cdp_incremental_materialization() -%}
    {{- return(adapter.dispatch('cdp_incremental_materialization')()) -}}
{%- endmacro %}

{% macro default__cdp_incremental_materialization() -%}{{- return('incremental') -}}{%- endmacro %}

{% macro spark__cdp_incremental_materialization() -%}{{- return('table') -}}{%- endmacro %}


{# Digest of a whole row (`alias` is the row's relation alias). #}
{% macro cdp_row_digest(alias) -%}
    {{- return(adapter.dispatch('cdp_row_digest')(alias)) -}}
{%- endmacro %}

{% macro default__cdp_row_digest(alias) -%}hash({{ alias }}){%- endmacro %}

{# Spark keeps no incremental state (its models rebuild whole): no digest is computed. #}
{% macro spark__cdp_row_digest(alias) -%}cast(null as bigint){%- endmacro %}


{# The fingerprint of a scope's models: `models` are model names, `vars` var names. #}
{% macro cdp_build_fingerprint(models, vars=[]) -%}
    {%- if not execute -%}{{- return('') -}}{%- endif -%}
    {%- set parts = [var('cdp_code_digest', '')] -%}
    {%- for name in models -%}
        {%- set node = graph.nodes.get('model.cdp.' ~ name) -%}
        {%- do parts.append(name ~ '=' ~ (node.checksum.checksum if node else 'absent')) -%}
    {%- endfor -%}
    {%- for v in vars -%}{%- do parts.append(v ~ '=' ~ tojson(var(v, none))) -%}{%- endfor -%}
    {{- return(local_md5(parts | join('|'))) -}}
{%- endmacro %}


{# The scope of an incremental model: {state, fingerprint} from its meta (cdp_incremental:
   {schema, state, models, vars}), or none for any other model. #}
{% macro cdp_incremental_scope() -%}
    {%- set scope = config.get('meta', {}).get('cdp_incremental') -%}
    {{- return(scope) -}}
{%- endmacro %}

{# Whether the scope's state is missing or was written by other model code or settings. #}
{% macro cdp_state_outdated(scope) -%}
    {%- set state = adapter.get_relation(this.database, scope.schema, scope.state) -%}
    {%- if state is none -%}{{- return(true) -}}{%- endif -%}
    {%- set found = run_query('select max(fingerprint) from ' ~ state) -%}
    {%- set wanted = cdp_build_fingerprint(scope.models, scope.get('vars', [])) -%}
    {{- return(found.columns[0].values()[0] != wanted) -}}
{%- endmacro %}

{# dbt's should_full_refresh(), also true for an incremental model whose state is outdated
   (overrides the global macro of that name; is_incremental() and the incremental
   materialization call it). #}
{% macro should_full_refresh() %}
    {%- set flag = config.get('full_refresh') -%}
    {%- if flag is none -%}{%- set flag = flags.FULL_REFRESH -%}{%- endif -%}
    {%- set scope = cdp_incremental_scope() -%}
    {%- if not flag and execute and scope and model.config.materialized == 'incremental' -%}
        {%- set flag = cdp_state_outdated(scope) -%}
    {%- endif -%}
    {%- do return(flag) -%}
{% endmacro %}


{# The people whose rows changed since the state was written: rows (row_key, cdp_id, digest)
   of `current_sql` against the state table `state_name` in this model's schema. Every current
   person is touched without a state, and when the scope's models rebuild whole (`scope`, as
   in their meta: --full-refresh, or a state written by other model code or settings): the
   scope's data tests check the touched people's rows only, so after a whole rebuild they
   check every row. #}
{% macro cdp_touched_people(current_sql, row_key, state_name, scope=none) -%}
    {%- set state = adapter.get_relation(this.database, this.schema, state_name) if execute else none -%}
    {%- set whole = state is none or (scope is not none and (flags.FULL_REFRESH or cdp_state_outdated(scope))) -%}
with current_rows as {{ cdp_materialized_cte() }} (
    {{ current_sql }}
)
{%- if whole %}
select distinct cdp_id from current_rows where cdp_id is not null
{%- else %},

changed as {{ cdp_materialized_cte() }} (
    select b.cdp_id as old_cdp_id, n.cdp_id as new_cdp_id
    from {{ state }} b
    full join current_rows n on n.{{ row_key }} = b.{{ row_key }}
    where b.digest is distinct from n.digest or b.cdp_id is distinct from n.cdp_id
)

select old_cdp_id as cdp_id from changed where old_cdp_id is not null
union
select new_cdp_id from changed where new_cdp_id is not null
{%- endif %}
{%- endmacro %}


{# `where <column> in (the touched people)` in an incremental run; nothing in a full build.
   The ref is taken in both, so dbt knows the dependency. #}
{% macro cdp_only_touched(touched_model, column='cdp_id', keyword='where') -%}
    {%- set touched = ref(touched_model) -%}
    {%- if is_incremental() %}
    {{ keyword }} {{ column }} in (select cdp_id from {{ touched }})
    {%- endif -%}
{%- endmacro %}

{# Pre-hook: delete every touched person from the model's table before the touched people are
   recomputed and inserted (people with no rows left stay deleted). #}
{% macro cdp_forget_touched_people(touched_alias='touched_people') -%}
    {%- if is_incremental() -%}
    delete from {{ this }} where cdp_id in (
        select cdp_id from {{ this.incorporate(path={'identifier': touched_alias}) }})
    {%- endif -%}
{%- endmacro %}


{# ---- the interactions stage's per-person models ---- #}

{# The interactions scope: its models are rebuilt whole when their code or these vars change -
   the as-of date moves days_since_last_order and the 12-month windows of every buyer. #}
{% macro cdp_interactions_scope() -%}
    {{- return({'schema': 'interactions', 'state': 'built_orders',
                'models': ['transaction_attributes', 'transaction_attributes_extended'],
                'vars': ['as_of_date', 'early_repeat_days']}) -}}
{%- endmacro %}

{# Config of a per-person interactions model. #}
{% macro cdp_interactions_incremental() -%}
    {{- config(materialized=cdp_incremental_materialization(), incremental_strategy='delete+insert',
               unique_key='cdp_id', on_schema_change='fail',
               pre_hook="{{ cdp_forget_touched_people() }}",
               meta={'cdp_incremental': cdp_interactions_scope()}) -}}
{%- endmacro %}

{# Every order with its person and a digest of the order row and its lines. #}
{% macro cdp_current_orders() -%}
{%- set lines = cdp_has('order_lines') -%}
    select t.order_key, t.cdp_id,
           {%- if lines %}
           {{ cdp_row_digest('t') }} + coalesce(l.lines_digest, 0) as digest
           {%- else %}
           {{ cdp_row_digest('t') }} as digest
           {%- endif %}
    from {{ ref('unified_transactions') }} t
    {%- if lines %}
    left join (
        select order_key, sum({{ cdp_row_digest('i') }}) as lines_digest
        from {{ ref('unified_itemized_transactions') }} i
        where order_key is not null
        group by order_key
    ) l using (order_key)
    {%- endif %}
{%- endmacro %}
