"""The reproduction wing: published experiments run end to end and their claims checked on data.

- ``claims``: each published claim as a check on recorded runs of several seeds;
- ``measures``: the numbers the claims compare, each a function of one run file;
- ``evidence``: the interval over paired seeds and the verdict (reproduced, within noise, not);
- ``registry``: which preset runs with which norms, and which claims it checks;
- ``facts``: how our setup differs from the source, in numbers, before training;
- ``run``: train a reproduction's paired runs of every seed on every core and check the claims;
- ``result`` and ``report``: what a reproduction produced, and its self-contained HTML report;
- ``cli``: ``python -m bnviz reproduce``;
- the trainability map: ``cells`` (many configs' runs on every core or a Dask cluster, kept on
  disk by config), ``map`` (grids and paired specs), ``map_data`` (a finished map's arrays, the
  shipped maps), ``map_claims``, ``map_figures``, ``map_report`` and ``map_cli`` (``python -m
  bnviz map``).
Importing the package loads nothing heavy (no torch, no plotly).
"""
