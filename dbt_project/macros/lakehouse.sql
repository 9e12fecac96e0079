{#
  dbt on Spark (target `spark`: dbt-spark in session mode, a local or cluster Spark). Tables
  live in the tenant's lakehouse folder as Parquet, one folder per table:
  <lakehouse>/<schema>/<table>/ - the layout the Spark engine's Dagster assets (domain.*,
  stitch.*) write too. cdp sets CDP_LAKEHOUSE (the folder) and CDP_LAKEHOUSE_TABLES (the
  schema.table folders that exist) for each dbt invocation; see cdp/dbt/project.py.
#}

{# Models are written to <lakehouse>/<schema>/<alias> (dbt-spark's default, location_root/alias,
   would put c360.customer_360 and email_c360.customer_360 in one folder). #}
{% macro spark__location_clause() %}
  {%- set location_root = config.get('location_root', validator=validation.any[basestring])
                          or env_var('CDP_LAKEHOUSE', '') -%}
  {%- if location_root %}
    location '{{ location_root }}/{{ model.schema }}/{{ model.alias }}'
  {%- endif %}
{%- endmacro %}


{#
  on-run-start: each dbt process has its own Spark session with an in-memory catalog, so the
  lakehouse tables it reads - sources and the models of earlier steps - are registered as
  tables over their Parquet folders. The models this run builds are left out: dbt (re)creates
  them at their location.
#}
{% macro cdp_register_lakehouse_tables() %}
  {%- if execute and target.type == 'spark' -%}
    {%- set root = env_var('CDP_LAKEHOUSE', '') -%}
    {%- set building = [] -%}
    {%- for uid in selected_resources if uid in graph.nodes -%}
      {%- set node = graph.nodes[uid] -%}
      {%- do building.append(node.schema ~ '.' ~ (node.alias or node.name)) -%}
    {%- endfor -%}
    {%- for table in env_var('CDP_LAKEHOUSE_TABLES', '').split(',') if table and table not in building -%}
      {%- set schema, name = table.split('.') -%}
      {%- do run_query('create schema if not exists ' ~ schema) -%}
      {%- do run_query('create table if not exists ' ~ schema ~ '.' ~ name
                       ~ " using parquet location '" ~ root ~ '/' ~ schema ~ '/' ~ name ~ "'") -%}
    {%- endfor -%}
  {%- endif -%}
{% endmacro %}
