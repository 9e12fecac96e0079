{#
  A full calendar: bi.calendar_years years from bi.calendar_start_year (85 by default), with
  ISO weekday, fiscal year/quarter/month (fiscal year named by the calendar year it ends in;
  bi.fiscal_year_start_month) and public holidays of bi.holiday_country.
#}
{%- set bi = var('bi') -%}
{%- set m = bi.fiscal_year_start_month | int -%}

with days as (
    {{ cdp_days("date '" ~ bi.calendar_start_year ~ "-01-01'",
                "date '" ~ (bi.calendar_start_year + bi.calendar_years) ~ "-01-01'") }}
)

select
    {{ cdp_date_key('calendar_date') }} as date_key,
    calendar_date,
    year(calendar_date) as calendar_year,
    quarter(calendar_date) as calendar_quarter,
    month(calendar_date) as calendar_month,
    {{ cdp_month_name('calendar_date') }} as month_name,
    day(calendar_date) as day_of_month,
    dayofyear(calendar_date) as day_of_year,
    {{ cdp_iso_day_of_week('calendar_date') }} as day_of_week,
    {{ cdp_day_name('calendar_date') }} as weekday_name,
    {{ cdp_iso_day_of_week('calendar_date') }} >= 6 as is_weekend,
    weekofyear(calendar_date) as iso_week,
    {{ cdp_year_month('calendar_date') }} as year_month,
    {%- if m == 1 %}
    year(calendar_date) as fiscal_year,
    {%- else %}
    year(calendar_date) + case when month(calendar_date) >= {{ m }} then 1 else 0 end as fiscal_year,
    {%- endif %}
    (month(calendar_date) - {{ m }} + 12) % 12 + 1 as fiscal_month,
    {{ cdp_int_div('((month(calendar_date) - ' ~ m ~ ' + 12) % 12)', 3) }} + 1 as fiscal_quarter,
    h.holiday_name is not null as is_holiday,
    h.holiday_name
from days
left join {{ source('bi', 'holiday_calendar') }} h on h.holiday_date = days.calendar_date
