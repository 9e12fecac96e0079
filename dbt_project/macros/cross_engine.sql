{#
  The SQL constructs whose spelling differs between the engines cdp's dbt models run on: DuckDB
  (the embedded default, dbt-duckdb) and Spark (dbt-spark, `engine: spark`). Each is an
  adapter.dispatch macro with a `duckdb__` and a `spark__` implementation, so the models keep one
  copy of the business logic. The duckdb__ side is the SQL the models had before Spark, so the
  DuckDB warehouse is built exactly as it was. Where dbt ships a cross-database macro
  (dbt.type_string, dbt.datediff, ...) the models call that instead.
#}


{# A struct literal from [(name, expression), ...]. #}
{% macro cdp_struct(fields) -%}
    {{- return(adapter.dispatch('cdp_struct')(fields)) -}}
{%- endmacro %}

{% macro duckdb__cdp_struct(fields) -%}
    struct_pack({% for name, expr in fields %}"{{ name }}" := {{ expr }}{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{% macro spark__cdp_struct(fields) -%}
    named_struct({% for name, expr in fields %}'{{ name }}', {{ expr }}{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}


{# Aggregate: the sorted list of the distinct non-null values of `expr`. #}
{% macro cdp_sorted_distinct_list(expr) -%}
    {{- return(adapter.dispatch('cdp_sorted_distinct_list')(expr)) -}}
{%- endmacro %}

{% macro duckdb__cdp_sorted_distinct_list(expr) -%}
    list_sort(list_distinct(list({{ expr }})))
{%- endmacro %}

{% macro spark__cdp_sorted_distinct_list(expr) -%}
    array_sort(collect_set({{ expr }}))
{%- endmacro %}


{# Aggregate: the sorted list of every value of `expr` (the rows are filtered to non-null ones). #}
{% macro cdp_sorted_list(expr) -%}
    {{- return(adapter.dispatch('cdp_sorted_list')(expr)) -}}
{%- endmacro %}

{% macro duckdb__cdp_sorted_list(expr) -%}
    list_sort(list({{ expr }}))
{%- endmacro %}

{% macro spark__cdp_sorted_list(expr) -%}
    array_sort(collect_list({{ expr }}))
{%- endmacro %}


{% macro cdp_empty_list() -%}
    {{- return(adapter.dispatch('cdp_empty_list')()) -}}
{%- endmacro %}

{% macro duckdb__cdp_empty_list() -%}[]{%- endmacro %}

{% macro spark__cdp_empty_list() -%}array(){%- endmacro %}


{# `<alias>.*` without some columns. #}
{% macro cdp_star_except(alias, columns) -%}
    {{- return(adapter.dispatch('cdp_star_except')(alias, columns)) -}}
{%- endmacro %}

{% macro duckdb__cdp_star_except(alias, columns) -%}
    {{ alias ~ '.' if alias }}* exclude ({{ columns | join(', ') }})
{%- endmacro %}

{% macro spark__cdp_star_except(alias, columns) -%}
    {{ alias ~ '.' if alias }}* except ({{ columns | join(', ') }})
{%- endmacro %}


{# A CTE computed once although it is read more than once (DuckDB inlines CTEs otherwise;
   Spark reuses the shared plan by itself). Use as `with x as {{ cdp_materialized_cte() }} (`. #}
{% macro cdp_materialized_cte() -%}
    {{- return(adapter.dispatch('cdp_materialized_cte')()) -}}
{%- endmacro %}

{% macro duckdb__cdp_materialized_cte() -%}materialized{%- endmacro %}

{% macro spark__cdp_materialized_cte() -%}{%- endmacro %}


{# A deterministic id in UUID text form from a string (md5 of it, as DuckDB casts it to uuid). #}
{% macro cdp_uuid_from_text(expr) -%}
    {{- return(adapter.dispatch('cdp_uuid_from_text')(expr)) -}}
{%- endmacro %}

{% macro duckdb__cdp_uuid_from_text(expr) -%}
    cast(md5({{ expr }}) as uuid)::varchar
{%- endmacro %}

{% macro spark__cdp_uuid_from_text(expr) -%}
    regexp_replace(md5({{ expr }}), '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '$1-$2-$3-$4-$5')
{%- endmacro %}


{#
  "First value in an order" per group - the merge rules' building block. A pick is
  {name, value, order, filter}: among the rows of a person that pass `filter`, the `value` of
  the first row in `order`.

  DuckDB has ordered aggregates: the pick is `first(value order by ...) filter (where ...)` in the
  person's GROUP BY. Spark has none, so the pick is a window over the person's rows
  (first_value ... ignore nulls over the whole partition) computed on the rows before the
  GROUP BY, and the aggregate takes it from any row. Use both:

      picked as (select *{{ cdp_pick_columns(picks, 'cdp_id') }} from records),
      merged as (select cdp_id, {{ cdp_pick(p) }} as ... from picked group by cdp_id)
#}
{% macro cdp_pick_columns(picks, partition_by) -%}
    {{- return(adapter.dispatch('cdp_pick_columns')(picks, partition_by)) -}}
{%- endmacro %}

{% macro duckdb__cdp_pick_columns(picks, partition_by) -%}{%- endmacro %}

{% macro spark__cdp_pick_columns(picks, partition_by) -%}
    {%- for p in picks %},
        first_value(case when {{ p.filter }} then {{ p.value }} end) ignore nulls over (
            partition by {{ partition_by }} order by {{ p.order }}
            rows between unbounded preceding and unbounded following) as {{ p.name }}__pick
    {%- endfor %}
{%- endmacro %}

{% macro cdp_pick(p) -%}
    {{- return(adapter.dispatch('cdp_pick')(p)) -}}
{%- endmacro %}

{% macro duckdb__cdp_pick(p) -%}
    first({{ p.value }}
          order by {{ p.order }}) filter (where {{ p.filter }})
{%- endmacro %}

{% macro spark__cdp_pick(p) -%}
    first({{ p.name }}__pick)
{%- endmacro %}


{#
  round(expr, digits) as DuckDB rounds a double: the exact binary value, half away from zero.
  Spark's round() rounds the double's shortest decimal text instead, so 55.345 (really
  55.34499999...) is 55.35 on Spark and 55.34 on DuckDB - a cent apart on an average order
  value. The Spark side scales by 10^digits and, when the scaled double is a tie (x.5), takes
  the exact product's rounding error (Dekker's two-product: Veltkamp split at 2^27 + 1) to see
  which side of the tie the true value is on. Checked equal to DuckDB on 40,000 values.
#}
{% macro cdp_round(expr, digits) -%}
    {{- return(adapter.dispatch('cdp_round')(expr, digits)) -}}
{%- endmacro %}

{% macro duckdb__cdp_round(expr, digits) -%}
    round({{ expr }}, {{ digits }})
{%- endmacro %}

{% macro spark__cdp_round(expr, digits) -%}
    {%- set scale = '1e' ~ digits -%}
    {%- set hi = '(abs(v) * 134217729D - (abs(v) * 134217729D - abs(v)))' -%}
    element_at(transform(array(cast(({{ expr }}) as double)), v ->
        element_at(transform(array(abs(v) * {{ scale }}), p ->
            sign(v) * (floor(p) + case
                when p - floor(p) > 0.5 then 1
                when p - floor(p) < 0.5 then 0
                when ({{ hi }} * {{ scale }} - p) + (abs(v) - {{ hi }}) * {{ scale }} < 0 then 0
                else 1 end) / {{ scale }}), 1)), 1)
{%- endmacro %}


{# Aggregate: the sorted distinct non-null values of `expr`; null when there are none. #}
{% macro cdp_sorted_distinct_values(expr) -%}
    {{- return(adapter.dispatch('cdp_sorted_distinct_values')(expr)) -}}
{%- endmacro %}

{% macro duckdb__cdp_sorted_distinct_values(expr) -%}
    list(distinct {{ expr }} order by {{ expr }}) filter (where {{ expr }} is not null)
{%- endmacro %}

{% macro spark__cdp_sorted_distinct_values(expr) -%}
    case when count({{ expr }}) > 0 then array_sort(collect_set({{ expr }})) end
{%- endmacro %}


{# ---- calendar (bi.dim_date, the BI date keys) ---- #}

{# One row per day from `start` (included) to `stop` (excluded): column calendar_date. #}
{% macro cdp_days(start, stop) -%}
    {{- return(adapter.dispatch('cdp_days')(start, stop)) -}}
{%- endmacro %}

{% macro duckdb__cdp_days(start, stop) -%}
    select cast(d as date) as calendar_date
    from range({{ start }}, {{ stop }}, interval 1 day) t(d)
{%- endmacro %}

{% macro spark__cdp_days(start, stop) -%}
    select explode(sequence({{ start }}, date_sub({{ stop }}, 1), interval 1 day)) as calendar_date
{%- endmacro %}

{# yyyymmdd as an integer: the BI schema's date key. #}
{% macro cdp_date_key(expr) -%}
    {{- return(adapter.dispatch('cdp_date_key')(expr)) -}}
{%- endmacro %}

{% macro duckdb__cdp_date_key(expr) -%}
    cast(strftime({{ expr }}, '%Y%m%d') as integer)
{%- endmacro %}

{% macro spark__cdp_date_key(expr) -%}
    cast(date_format({{ expr }}, 'yyyyMMdd') as int)
{%- endmacro %}

{% macro cdp_year_month(expr) -%}
    {{- return(adapter.dispatch('cdp_year_month')(expr)) -}}
{%- endmacro %}

{% macro duckdb__cdp_year_month(expr) -%}strftime({{ expr }}, '%Y-%m'){%- endmacro %}

{% macro spark__cdp_year_month(expr) -%}date_format({{ expr }}, 'yyyy-MM'){%- endmacro %}

{# Full English month name (January). #}
{% macro cdp_month_name(expr) -%}
    {{- return(adapter.dispatch('cdp_month_name')(expr)) -}}
{%- endmacro %}

{% macro duckdb__cdp_month_name(expr) -%}monthname({{ expr }}){%- endmacro %}

{% macro spark__cdp_month_name(expr) -%}date_format({{ expr }}, 'MMMM'){%- endmacro %}

{# Full English weekday name (Monday). #}
{% macro cdp_day_name(expr) -%}
    {{- return(adapter.dispatch('cdp_day_name')(expr)) -}}
{%- endmacro %}

{% macro duckdb__cdp_day_name(expr) -%}dayname({{ expr }}){%- endmacro %}

{% macro spark__cdp_day_name(expr) -%}date_format({{ expr }}, 'EEEE'){%- endmacro %}

{# ISO weekday: Monday 1 .. Sunday 7. #}
{% macro cdp_iso_day_of_week(expr) -%}
    {{- return(adapter.dispatch('cdp_iso_day_of_week')(expr)) -}}
{%- endmacro %}

{% macro duckdb__cdp_iso_day_of_week(expr) -%}isodow({{ expr }}){%- endmacro %}

{% macro spark__cdp_iso_day_of_week(expr) -%}(weekday({{ expr }}) + 1){%- endmacro %}

{# Integer division of non-negative integers. #}
{% macro cdp_int_div(a, b) -%}
    {{- return(adapter.dispatch('cdp_int_div')(a, b)) -}}
{%- endmacro %}

{% macro duckdb__cdp_int_div(a, b) -%}{{ a }} // {{ b }}{%- endmacro %}

{% macro spark__cdp_int_div(a, b) -%}({{ a }} div {{ b }}){%- endmacro %}


{# The materialization of a model that is only a thin layer over another table: a view on
   DuckDB; a table on Spark, whose catalog (in-memory, one per dbt process) would lose the view
   before the next step - or a Dagster run of a subset of a database's models - reads it. #}
{% macro cdp_view_materialization() -%}
    {{- return(adapter.dispatch('cdp_view_materialization')()) -}}
{%- endmacro %}

{% macro duckdb__cdp_view_materialization() -%}{{- return('view') -}}{%- endmacro %}

{% macro spark__cdp_view_materialization() -%}{{- return('table') -}}{%- endmacro %}
