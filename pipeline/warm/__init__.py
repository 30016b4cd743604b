"""A warm runner: `keel run` without paying for its imports each time (docs/adr/0034-warm-runner.md).

`keel server start` starts, beside the Prefect server, one process per project that has imported
the heavy libraries every flow verb needs (pandas, pyarrow, LightGBM, scikit-learn, SciPy,
pydantic, Hydra) and waits on `.keel/runner/runner.sock`. The `keel` command hands a flow verb to
it with its own stdin/stdout/stderr, directory, environment and umask; the runner forks, and the
child runs the verb exactly as `keel` would, importing Keel's own code fresh from disk. Anything
that would make the fork differ from a cold start (another interpreter, changed packages, thread
settings read at import) makes `keel` run cold instead.
"""
