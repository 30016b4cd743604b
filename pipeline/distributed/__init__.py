"""runtime.executor dask: the same spec's steps mapped over data partitions on a Dask cluster.

cluster.py opens (or connects to) the cluster; partitions.py lists a partitioned source;
validate.py / profile.py / score.py / train.py are the distributed forms of the local steps,
with results equal to theirs (docs/adr/0024-dask-executor.md).
"""
