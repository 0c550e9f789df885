{#- The marketing team's nine questions, each answered once, here, in a short plain-English
    sentence with its figures: the report, the dashboard and BI tools read these rows
    instead of composing their own. Always nine rows; before the first clustering each
    answer says what is missing. Figures come from the insiders marts ref'd below, and
    are written through macros/formatting.sql. -#}
{%- set grace = number_var('membership_grace_cycles', integer=true, minimum=0) | int %}
{%- set grace_words = grace ~ ' more re-evaluation' ~ ('' if grace == 1 else 's') %}
{#- One comparison of evidence's insiders_vs_rest, in words (aggregated below). -#}
{% set comparison -%}
    case metric
        when 'monetary' then 'net revenue (GBP) '
        when 'frequency' then 'invoices '
        else metric || ' '
    end
    || {{ format_number('insiders_mean', 1) }} || ' against '
    || {{ format_number('others_mean', 1) }} || ' for the rest ('
    || {{ format_number('100 * confidence', 0) }} || '% interval of the difference '
    || {{ format_number('ci_low', 1) }} || ' to '
    || {{ format_number('ci_high', 1) }} || ', Mann-Whitney '
    || {{ format_p_value('p_value') }} || ')'
{%- endset %}
with

kpis_row as (

    select
        as_of,
        is_synthetic,
        insiders,
        customers,
        share_of_customers,
        share_of_customer_revenue,
        share_of_all_revenue,
        share_of_items,
        insiders_avg_ticket,
        others_avg_ticket

    from {{ ref('kpis') }}
    where as_of = (select max(latest.as_of) from {{ ref('kpis') }} as latest)

),

choice_row as (

    select
        definition,
        description,
        mean_ratio,
        min_ratio,
        mean_share,
        case chosen_by
            when 'forced' then 'forced by the analyst through var insiders_definition'
            when 'best_evidence' then 'chosen by the rolling-origin evidence'
            when 'best_mean_none_qualified'
                then 'chosen for the best mean, as none matched the top spenders every time'
            when 'no_evaluation_origin'
                then 'the default until there is enough history to evaluate definitions'
        end as chosen_words

    from {{ ref('definition_choice') }}
    where is_chosen

),

cluster_row as (

    select
        cluster_name,
        customers as cluster_customers,
        insiders_members as cluster_insiders,
        frequency_vs_base,
        monetary_vs_base,
        ticket_vs_base,
        return_rate_vs_base,
        mean_recency_days as cluster_recency_days

    from {{ ref('cluster_profile') }}
    where is_insider

),

member_profile as (

    select
        nullif(count(*), 0) as members,
        {{ median('frequency') }} as median_frequency,
        {{ median('monetary') }} as median_monetary,
        {{ median('recency_days') }} as median_recency

    from {{ ref('members') }}

),

member_clusters as (

    select
        {{ ordered_string_agg(
            format_count('insiders_members') ~ " || ' in ' || cluster_name",
            "', '",
            'insiders_members desc, cluster_id asc'
        ) }} as spread

    from {{ ref('cluster_profile') }}
    where insiders_members > 0

),

rules as (

    select
        count(*) as rules,
        max(rule) filter (where rule_id = 1) as first_rule,
        max(precision) filter (where rule_id = 1) as first_precision,
        max(recall) filter (where rule_id = 1) as first_recall

    from {{ ref('eligibility_rules') }}

),

movement as (

    select * from {{ ref('membership_movement') }}

),

latest_movement as (

    select
        evaluation_date as latest_date,
        members as latest_members,
        entered as latest_entered,
        left_program as latest_left,
        in_grace as latest_in_grace

    from movement
    where evaluation_date = (select max(latest.evaluation_date) from movement as latest)

),

ledger as (

    select
        count(*) filter (where valid_to is not null) as memberships_ended,
        count(*) filter (where membership_number > 1) as came_back

    from {{ ref('membership_history') }}

),

forecast_row as (

    select
        customers as forecast_customers,
        expected_revenue,
        lower_bound,
        upper_bound,
        naive_revenue,
        period_start,
        period_end,
        horizon_days,
        errors_behind_interval,
        evaluation_origins,
        origins_covered,
        median_abs_relative_error,
        naive_median_abs_relative_error

    from {{ ref('revenue_forecast') }}
    where customer_group = 'insiders'

),

all_row as (

    select
        customers as all_customers,
        expected_revenue as all_expected_revenue

    from {{ ref('revenue_forecast') }}
    where customer_group = 'all_customers'

),

evaluation as (

    select * from {{ ref('definition_evaluation') }}

),

chosen_record as (

    select
        nullif(count(*), 0) as origins,
        min(chosen.share_of_horizon_revenue) as min_share,
        max(chosen.share_of_horizon_revenue) as max_share,
        count(*) filter (
            where chosen.share_of_horizon_revenue > random_groups.share_high
        ) as above_random,
        min(random_groups.share_of_horizon_revenue) as random_min_share,
        max(random_groups.share_of_horizon_revenue) as random_max_share

    from evaluation as chosen
    inner join choice_row
        on chosen.definition = choice_row.definition
    left join evaluation as random_groups
        on
            chosen.origin_date = random_groups.origin_date
            and random_groups.is_baseline_random

),

in_sample as (

    select
        {{ ordered_string_agg(
            comparison,
            "'; '",
            "metric = 'frequency' asc, " ~ binary_text('metric') ~ " asc"
        ) }} as comparisons

    from {{ ref('evidence') }}
    where evidence_kind = 'insiders_vs_rest'

),

actions as (

    select
        max(recommended_action) filter (where is_insider) as insiders_action,
        max(cluster_name) filter (where is_insider) as insiders_cluster_name,
        {{ ordered_string_agg(
            "cluster_name || ': ' || recommended_action",
            "'. '",
            'share_of_revenue desc, cluster_id asc',
            where='not is_insider'
        ) }} as other_actions

    from {{ ref('cluster_actions') }}

),

facts as (

    select
        member_profile.*,
        member_clusters.*,
        rules.*,
        ledger.*,
        chosen_record.*,
        in_sample.*,
        actions.*,
        kpis_row.*,
        choice_row.*,
        cluster_row.*,
        latest_movement.*,
        forecast_row.*,
        all_row.*

    from member_profile
    cross join member_clusters
    cross join rules
    cross join ledger
    cross join chosen_record
    cross join in_sample
    cross join actions
    left join kpis_row on true
    left join choice_row on true
    left join cluster_row on true
    left join latest_movement on true
    left join forecast_row on true
    left join all_row on true

),

answered as (

    select
        1 as question_number,
        'Who is eligible for the Insiders program?' as question,
        coalesce(
            'The ' || {{ format_count('members') }} || ' customers chosen by the definition '
            || definition || ' (' || chosen_words || '): ' || description
            || '. The list is the table insiders.members.',
            'No Insiders yet: no definition has chosen any member (run insiders run).'
        ) as answer,
        members as figure,
        'customers' as figure_unit

    from facts

    union all

    select
        2 as question_number,
        'How many customers are in the program?' as question,
        coalesce(
            {{ format_count('insiders') }} || ' of ' || {{ format_count('customers') }}
            || ' customers (' || {{ format_share('share_of_customers') }} || ')'
            || coalesce(
                ': as many as the clustering''s Insiders cluster holds ('
                || {{ format_count('cluster_customers') }} || ' customers), and '
                || {{ format_count('cluster_insiders') }}
                || ' of the Insiders are in that cluster',
                ''
            ) || '.',
            'No Insiders yet: no customer has been labelled (run insiders run).'
        ) as answer,
        insiders as figure,
        'customers' as figure_unit

    from facts

    union all

    select
        3 as question_number,
        'What characterises them?' as question,
        coalesce(
            'The Insiders buy a median of ' || {{ format_number('median_frequency') }}
            || ' invoices for a median net revenue of GBP '
            || {{ format_number('median_monetary') }} || ', and last bought a median of '
            || {{ format_number('median_recency') }} || ' days ago.'
            || coalesce(
                ' The clustering, which sorts the whole base into behaviour groups, '
                || 'places them so: ' || spread || '.', ''
            )
            || coalesce(
                ' Its most valuable group, ' || cluster_name || ', buys '
                || {{ format_number('frequency_vs_base', 1) }}
                || ' times as often as the whole base and spends '
                || {{ format_number('monetary_vs_base', 1) }} || ' times as much, with a '
                || 'ticket ' || {{ format_number('ticket_vs_base', 1) }}
                || ' times and a return rate '
                || {{ format_number('return_rate_vs_base', 1) }}
                || ' times the base''s; it last bought '
                || {{ format_number('cluster_recency_days') }} || ' days ago on average.',
                ''
            ),
            'No Insiders yet, so nothing to characterise (run insiders run).'
        ) as answer,
        median_monetary as figure,
        'currency' as figure_unit

    from facts

    union all

    select
        4 as question_number,
        'What share of revenue do they bring?' as question,
        coalesce(
            {{ format_share('share_of_customer_revenue') }} || ' of customer revenue and '
            || {{ format_share('share_of_all_revenue') }}
            || ' of all revenue (guest checkouts included), and '
            || {{ format_share('share_of_items') }}
            || ' of the items sold; their average ticket is GBP '
            || {{ format_number('insiders_avg_ticket') }}
            || coalesce(
                ' against GBP ' || {{ format_number('others_avg_ticket') }} || ' for the rest',
                ''
            ) || '.',
            'No Insiders yet: no revenue share to give (run insiders run).'
        ) as answer,
        share_of_customer_revenue as figure,
        'share' as figure_unit

    from facts

    union all

    select
        5 as question_number,
        'What revenue can we expect from them in the next months?' as question,
        coalesce(
            'The ' || {{ format_count('forecast_customers') }}
            || ' Insiders are expected to spend GBP '
            || {{ format_number('expected_revenue') }} || ' (net revenue) from '
            || {{ format_date('period_start') }} || ' to ' || {{ format_date('period_end') }}
            || ', between GBP ' || {{ format_number('lower_bound') }} || ' and GBP '
            || {{ format_number('upper_bound') }}
            || case
                when errors_behind_interval > 0
                    then
                        ' (a range from the largest error at '
                        || {{ format_count('errors_behind_interval') }}
                        || ' earlier origins, not a probability)'
                else ' (a preset width: no earlier error to learn from yet)'
            end
            || '; the naive forecast, what they spent in the '
            || {{ format_count('horizon_days') }} || ' days before, is GBP '
            || {{ format_number('naive_revenue') }} || '.'
            || coalesce(
                ' All ' || {{ format_count('all_customers') }} || ' customers: GBP '
                || {{ format_number('all_expected_revenue') }} || '.', ''
            )
            || coalesce(
                ' Made the same way at ' || {{ format_count('nullif(evaluation_origins, 0)') }}
                || ' past origins with only the data before each, the forecast missed what '
                || 'the Insiders then spent by a median of '
                || {{ format_share('median_abs_relative_error') }}
                || ' (the naive forecast by '
                || {{ format_share('naive_median_abs_relative_error') }}
                || '), and its interval covered the actual at '
                || {{ format_count('origins_covered') }} || ' of '
                || {{ format_count('evaluation_origins') }} || ' origins.',
                ' No past origin to check the forecast against yet.'
            ),
            'No forecast yet: the revenue forecast has not run (run insiders run).'
        ) as answer,
        expected_revenue as figure,
        'currency' as figure_unit

    from facts

    union all

    select
        6 as question_number,
        'What makes a person eligible?' as question,
        coalesce(
            'Being among the customers the definition ' || definition
            || ' picks at the monthly re-evaluation (' || description
            || '), as many as the clustering''s Insiders cluster holds'
            || coalesce(' (' || {{ format_count('members') }} || ' now)', '')
            || '; the definition was ' || chosen_words || '.'
            || coalesce(
                ' In readable rules (a depth-3 decision tree on the customer features), '
                || 'mostly: ' || first_rule || ' (precision '
                || {{ format_share('first_precision') }} || ', recall '
                || {{ format_share('first_recall') }} || '; '
                || {{ format_count('rules') }}
                || case when rules = 1 then ' rule' else ' rules' end
                || ' in all, in insiders.eligibility_rules).',
                ''
            ),
            'No definition chosen yet (run insiders run).'
        ) as answer,
        cast(null as {{ type_double() }}) as figure,
        cast(null as {{ type_text() }}) as figure_unit

    from facts

    union all

    select
        7 as question_number,
        'What removes a person from the program?' as question,
        'Membership is re-evaluated every month: a member the definition'
        || coalesce(' ' || definition, '') || ' no longer picks keeps the membership for '
        || '{{ grace_words }} (the grace period, var membership_grace_cycles) and leaves '
        || 'at the next one still not picked.'
        || coalesce(
            ' At the latest re-evaluation (' || {{ format_date('latest_date') }} || '): '
            || {{ format_count('latest_members') }} || ' members, '
            || {{ format_count('latest_entered') }} || ' entered, '
            || {{ format_count('latest_left') }} || ' left, '
            || {{ format_count('latest_in_grace') }} || ' in their grace period. So far '
            || {{ format_count('memberships_ended') }} || ' memberships ended and '
            || {{ format_count('came_back') }} || ' were customers coming back.',
            ' No re-evaluation yet (run insiders run).'
        ) as answer,
        case when latest_date is not null then memberships_ended end as figure,
        'customers' as figure_unit

    from facts

    union all

    select
        8 as question_number,
        'What guarantees they are better than the rest?' as question,
        coalesce(
            'Out of sample, which is what counts: at each of the '
            || {{ format_count('origins') }} || ' monthly origins, the Insiders chosen by '
            || definition || ' with only the data before it took '
            || {{ format_share('min_share') }} || ' to ' || {{ format_share('max_share') }}
            || ' of the next months'' revenue of the customers known then (mean '
            || {{ format_share('mean_share') }} || ')'
            || coalesce(
                '; random groups of the same size took '
                || {{ format_share('random_min_share') }} || ' to '
                || {{ format_share('random_max_share') }}
                || ', and the Insiders were above the random groups'' range at '
                || {{ format_count('above_random') }} || ' of '
                || {{ format_count('origins') }} || ' origins',
                ''
            )
            || '. Against the same number of top customers by past net revenue they took '
            || {{ format_ratio('mean_ratio', 3) }} || ' on average (lowest '
            || {{ format_ratio('min_ratio', 3) }} || '). Nothing guarantees the future: '
            || 'this is how the rule did at every origin so far.',
            case
                when definition is null
                    then 'No evidence yet: no definition has been evaluated (run insiders run).'
                else
                    'No out-of-sample evidence yet: there is not enough history for the '
                    || 'rolling-origin evaluation.'
            end
        )
        || coalesce(' In sample, the Insiders against the rest today: ' || comparisons || '.', '')
            as answer,
        case when origins is not null then mean_share end as figure,
        'share' as figure_unit

    from facts

    union all

    select
        9 as question_number,
        'What actions would raise revenue?' as question,
        coalesce(
            nullif(
                coalesce(
                    'For the ' || insiders_cluster_name || ' cluster: ' || insiders_action
                    || '; Insiders outside it get the program''s benefits on top of their '
                    || 'cluster''s action.',
                    ''
                )
                || coalesce(
                    ' The other clusters, from the analysts'' rules (seed '
                    || 'cluster_action_rules): ' || other_actions || '.',
                    ''
                ),
                ''
            ),
            'No clusters yet, so no actions (run insiders run).'
        ) as answer,
        cast(null as {{ type_double() }}) as figure,
        cast(null as {{ type_text() }}) as figure_unit

    from facts

),

final as (

    select
        cast(answered.question_number as integer) as question_number,
        cast(answered.question as {{ type_text() }}) as question,
        cast(
            case when facts.is_synthetic then '(synthetic demo data) ' else '' end
            || ltrim(answered.answer) as {{ type_text() }}
        ) as answer,
        cast(answered.figure as {{ type_double() }}) as figure,
        cast(
            case when answered.figure is not null then answered.figure_unit end
            as {{ type_text() }}
        ) as figure_unit,
        coalesce(facts.as_of, {{ as_of_date() }}) as as_of,
        coalesce(facts.is_synthetic, false) as is_synthetic

    from answered
    cross join facts

)

select * from final
