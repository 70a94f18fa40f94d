"""Studies: one function per command that does all the work - counting, tracing, predicting, timing, training -
and returns a typed, frozen study (`LayerStudy`, `NetworkStudy`, `ModelStudy`, `CompareStudy`, `SweepStudy`,
`DeviceStudy`). Runtimes and training are parameters and fields of the one study, not separate pipelines.

`report` draws a study; `cli` and the public API (`dscalc.layer`, ...) call these functions. Each command's
module imports what only it needs, and `trace`/`measure` are imported where they are used, so `dscalc layer`
never imports torch or the timing machinery it does not run."""
