"""The jobs' database layer, split by who uses it.

- `rows`: new job rows and the "queued on a backend" mark (API submit, dispatcher, relay);
- `reads`: one job, a page of jobs, a cancel, with ownership checked (API routes);
- `worker`: claim an attempt and finish it (`runner.run_job`, any backend);
- `sweeps`: the batches of the reaper, the relay, the embedded poll and the cleanup;
- `transitions`: the compare-and-set UPDATE every status change goes through.
"""
