{#
  The orders the per-person interaction models were last built from (order_key, cdp_id, digest
  of the order and its lines) and the models' fingerprint, written after them; read by the next
  run's touched_people (not through ref: it is the previous run's table). Incremental like the
  models it records: the touched people's rows are replaced by their current ones. An order of
  no known person has no row (it touches nobody, in the state or out of it).
#}
{{ cdp_interactions_incremental() }}
{%- set scope = cdp_interactions_scope() -%}
{%- for m in scope.models %}
-- depends_on: {{ ref(m) }}
{%- endfor %}
select *, '{{ cdp_build_fingerprint(scope.models, scope.vars) }}' as fingerprint
from ({{ cdp_current_orders() }})
where cdp_id is not null
{{- cdp_only_touched('touched_people', keyword='and') }}
