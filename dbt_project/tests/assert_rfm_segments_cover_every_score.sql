{#- Each of the 25 (r_score, fm_score) cells falls in exactly one segment of the
    rfm_segments seed, so an analyst's edit cannot leave customers unnamed. -#}
with

cells as (

    select
        r.r_score,
        fm.fm_score
    from (values (1), (2), (3), (4), (5)) as r (r_score)
    cross join (values (1), (2), (3), (4), (5)) as fm (fm_score)

),

matches as (

    select
        cells.r_score,
        cells.fm_score,
        count(segments.rfm_segment) as segments_matched
    from cells
    left join {{ ref('rfm_segments') }} as segments
        on
            cells.r_score between segments.r_score_min and segments.r_score_max
            and cells.fm_score between segments.fm_score_min and segments.fm_score_max
    group by cells.r_score, cells.fm_score

)

select * from matches
where segments_matched != 1
