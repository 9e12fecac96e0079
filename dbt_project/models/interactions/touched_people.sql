{#
  The people whose per-person interaction attributes this run recomputes: an order (or one of
  its lines) joined, left, changed, or moved to another person since interactions.built_orders
  (both the old and the new cdp_id). Every buyer on a first build. macros/incremental_people.sql.
#}
{{ cdp_touched_people(cdp_current_orders(), 'order_key', 'built_orders', cdp_interactions_scope()) }}
