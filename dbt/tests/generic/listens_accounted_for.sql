{#- Days of audit.listen_ledger that do not add up (a layer lost rows without a reason) or that
    kept less than min_kept_share of what raw received. -#}
{% test listens_accounted_for(model, min_kept_share=0.95) %}
select *
from {{ model }}
where unaccounted_rows <> 0
    or lost_in_staging_rows <> 0
    or lost_in_mart_rows <> 0
    or (received_rows > 0 and kept_rows < {{ min_kept_share }} * received_rows)
{% endtest %}
